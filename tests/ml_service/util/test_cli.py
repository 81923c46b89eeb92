"""What every script's main() shares: clear errors and exit codes."""
import subprocess
import sys


from ml_service.errors import ConfigurationError
from ml_service.paths import PROJECT_ROOT
from ml_service.util.cli import run_cli


def test_a_user_error_is_one_line_and_exit_code_1(caplog):
    def body():
        raise ConfigurationError("bad setting X: set it to Y")

    assert run_cli(body) == 1
    assert "ConfigurationError: bad setting X: set it to Y" in caplog.text


def test_the_body_exit_code_is_returned():
    assert run_cli(lambda: 3) == 3


def test_a_script_writes_what_it_opened_before_it_exits(tmp_path):
    # What a faster shut-down (gc.freeze() before exit) once broke: a file the script left
    # open is flushed at exit, and atexit handlers run.
    target = tmp_path / "out.txt"
    code = (
        "import atexit, sys\n"
        "from ml_service.util.cli import run_cli\n"
        "handle = open(sys.argv[1], 'w')\n"
        "def body():\n"
        "    handle.write('written')\n"
        "    return 0\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "sys.exit(run_cli(body))\n")
    done = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True,
                          text=True, cwd=PROJECT_ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "atexit ran"
    assert target.read_text() == "written"
