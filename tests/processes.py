"""What /proc says of processes, for the tests that start, kill or look for them (Linux)."""
from pathlib import Path
from typing import List, Optional

PROC = Path("/proc")


def stat_fields(pid: int) -> Optional[List[str]]:
    """The fields of /proc/<pid>/stat after the command name (state, parent, group, ...), or
    None once there is no such process. The name, in parentheses, may hold anything: the
    fields follow the last ")"."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields


def alive(pid: int) -> bool:
    """True unless the process has ended (a zombie, not yet reaped by its parent, has)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def parent_of(pid: int) -> int:
    """The parent's pid of a running process."""
    return int(stat_fields(pid)[1])


def group_members(pgid: int) -> List[int]:
    """The live processes of a process group (an ended one waiting to be reaped, a zombie,
    holds no port and no memory)."""
    members = []
    for entry in PROC.iterdir():
        fields = stat_fields(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return sorted(members)
