"""A small stand-in for the Azure DevOps agent: run a pipeline's script tasks, in order.

It expands step templates (with their ``${{ if eq/ne(parameters.x, 'v') }}`` insertions),
fills in ``$(VARIABLE)`` macros, maps variables to environment variables the way the agent
does (``Build.BuildId`` -> ``BUILD_BUILDID``), evaluates the simple conditions the project's
pipelines use, keeps variables that steps set with ``##vso[task.setvariable ...]``, and
stands in for the artifact tasks by copying folders. Only ``AzureCLI@2`` tasks run: they are
the steps that call the project's scripts against a platform; plain ``script`` steps
(installing, linting, testing) are the build agent's own business and are skipped.
"""
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

MACRO = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")
TEMPLATE_EXPRESSION = re.compile(r"\$\{\{\s*parameters\.(\w+)\s*\}\}")
CONDITIONAL = re.compile(r"\$\{\{\s*if\s+(eq|ne)\(parameters\.(\w+),\s*'([^']*)'\)\s*\}\}")
SET_VARIABLE = re.compile(r"##vso\[task\.setvariable variable=([\w.]+)(;[^\]]*)?\](.*)")
EQUALS = re.compile(r"eq\(variables\['([\w.]+)'\],\s*'([^']*)'\)")
PRESENT = re.compile(r"(?<!eq\()variables\['([\w.]+)'\](?!,)")


@dataclass
class Agent:
    """The state one dry run keeps across pipelines: variables, artifacts, what ran."""

    root: Path
    variables: Dict[str, str]
    env: Dict[str, str]
    artifacts: Dict[str, Path] = field(default_factory=dict)
    ran: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)

    def expand(self, text: str) -> str:
        """Fill in $(VARIABLE) macros; unknown ones stay, as on the agent."""
        return MACRO.sub(lambda m: self.variables.get(m.group(1), m.group(0)), text)

    def environment(self) -> Dict[str, str]:
        """Variables as the agent exports them, over the base environment."""
        mapped = {name.upper().replace(".", "_"): value for name, value in self.variables.items()}
        return {**mapped, **self.env}

    def condition_holds(self, condition: Optional[str]) -> bool:
        """The conditions the project uses: succeeded(), eq(variables['X'], 'v') and a bare
        variables['X'] (true when set and not empty)."""
        for name, value in EQUALS.findall(condition or ""):
            if self.variables.get(name, "") != value:
                return False
        return all(self.variables.get(name) for name in PRESENT.findall(condition or ""))

    def run_pipeline(self, path: Path, parameters: Optional[Dict[str, str]] = None) -> None:
        """Run every stage and job of a pipeline file, in order."""
        document = yaml.safe_load(path.read_text())
        defaults = {p["name"]: str(p.get("default", ""))
                    for p in document.get("parameters", []) or []}
        parameters = {**defaults, **(parameters or {})}
        for stage in document.get("stages", []):
            if not self.condition_holds(stage.get("condition")):
                self.skipped.append(f"stage {stage['stage']}")
                continue
            for job in stage.get("jobs", []):
                for step in self.steps(path.parent, job.get("steps", []), parameters):
                    self.run_step(step)

    def steps(self, folder: Path, steps: List[Any], parameters: Dict[str, str]) -> List[dict]:
        """Steps with templates and conditional insertions expanded."""
        expanded: List[dict] = []
        for step in steps:
            key = next(iter(step))
            conditional = CONDITIONAL.match(key)
            if conditional:
                operator, name, value = conditional.groups()
                if (parameters.get(name) == value) == (operator == "eq"):
                    expanded += self.steps(folder, step[key], parameters)
            elif "template" in step:
                template = yaml.safe_load((folder / step["template"]).read_text())
                inner = {p["name"]: str(p.get("default", ""))
                         for p in template.get("parameters", []) or []}
                given = {k: TEMPLATE_EXPRESSION.sub(lambda m: parameters.get(m.group(1), ""),
                                                    str(v))
                         for k, v in (step.get("parameters") or {}).items()}
                expanded += self.steps(folder, template.get("steps", []), {**inner, **given})
            else:
                expanded.append(yaml.safe_load(TEMPLATE_EXPRESSION.sub(
                    lambda m: parameters.get(m.group(1), ""), yaml.safe_dump(step))))
        return expanded

    def run_step(self, step: dict) -> None:
        """Run one step: an AzureCLI@2 script, or an artifact task stood in for."""
        label = step.get("displayName") or step.get("task") or step.get("download") or "step"
        if not self.condition_holds(step.get("condition")):
            self.skipped.append(label)
            return
        task = step.get("task", "")
        inputs = step.get("inputs", {})
        if task == "PublishPipelineArtifact@1":
            self.artifacts[self.expand(inputs["artifact"])] = Path(self.expand(
                inputs["targetPath"]))
        elif "download" in step:
            artifact = self.expand(step["artifact"])
            target = Path(self.variables["Pipeline.Workspace"]) / step["download"] / artifact
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(self.artifacts[artifact], target)
        elif task == "AzureCLI@2":
            self.run_script(label, step.get("name"), self.expand(inputs["inlineScript"]))
            return
        else:
            self.skipped.append(label)
            return
        self.ran.append(label)

    def run_script(self, label: str, step_name: Optional[str], script: str) -> None:
        """Run a script with bash in the repository root; keep the variables it sets."""
        # The agent's own environment (with coverage's variables where the test has them),
        # then the pipeline's.
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
               **self.environment()}
        done = subprocess.run(["bash", "-c", script], cwd=self.root, env=env,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"{label!r} failed ({done.returncode}):\n{script}\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        for name, options, value in SET_VARIABLE.findall(done.stdout):
            self.variables[name] = value.strip()
            if step_name and "isOutput=true" in (options or ""):
                self.variables[f"{step_name}.{name}"] = value.strip()
        self.ran.append(label)
