"""Platform settings: small typed objects read from the environment inside main().

Names follow MLOpsPython's variables so the Azure DevOps variables template and
``.env`` files carry over. Nothing here reads the environment at import.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional

from ml_service.errors import ConfigurationError

TRUE_WORDS = {"true", "1", "yes", "y", "on"}
FALSE_WORDS = {"false", "0", "no", "n", "off"}


def load_dotenv_file(path: Optional[Path] = None) -> None:
    """Load ``.env`` (if present) into os.environ without overriding set variables."""
    from dotenv import load_dotenv

    load_dotenv(dotenv_path=path or Path.cwd() / ".env", override=False)


def parse_bool(value: str, name: str) -> bool:
    """Read a true/false setting; raise ConfigurationError naming the variable."""
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigurationError(f"{name}={value!r} is not a boolean; use true or false")


def parse_port(value: str, name: str) -> int:
    """Read a TCP port (0 picks a free one); raise ConfigurationError naming the variable."""
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"{name}={value!r} is not a port number (0 to 65535)")
    return port


@dataclass(frozen=True)
class BackendSettings:
    """Which backend to use and, for the local one, where its store lives."""

    kind: str = "local"
    root: Path = Path(".mlops")

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "BackendSettings":
        """Read MLOPS_BACKEND and MLOPS_ROOT."""
        env = os.environ if env is None else env
        root = Path(env.get("MLOPS_ROOT") or cls.root)
        return cls(kind=(env.get("MLOPS_BACKEND") or cls.kind).strip().lower(),
                   root=root.resolve())


@dataclass(frozen=True)
class TrainingSettings:
    """Names and switches of the training pipeline."""

    model_name: str = "diabetes_regression_model.pkl"
    experiment_name: str = "mlopspython"
    dataset_name: str = "diabetes_ds"
    pipeline_name: str = "diabetes-Training-Pipeline"
    run_evaluation: bool = True
    allow_run_cancel: bool = True
    build_id: Optional[str] = None
    build_uri: Optional[str] = None

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "TrainingSettings":
        """Read MODEL_NAME, EXPERIMENT_NAME, DATASET_NAME, TRAINING_PIPELINE_NAME,
        RUN_EVALUATION, ALLOW_RUN_CANCEL, BUILD_BUILDID and BUILD_BUILDURI."""
        env = os.environ if env is None else env

        def text(name: str, default: Optional[str]) -> Optional[str]:
            value = env.get(name, "").strip()
            return value or default

        def flag(name: str, default: bool) -> bool:
            value = env.get(name, "").strip()
            return parse_bool(value, name) if value else default

        return cls(
            model_name=text("MODEL_NAME", cls.model_name),
            experiment_name=text("EXPERIMENT_NAME", cls.experiment_name),
            dataset_name=text("DATASET_NAME", cls.dataset_name),
            pipeline_name=text("TRAINING_PIPELINE_NAME", cls.pipeline_name),
            run_evaluation=flag("RUN_EVALUATION", cls.run_evaluation),
            allow_run_cancel=flag("ALLOW_RUN_CANCEL", cls.allow_run_cancel),
            build_id=text("BUILD_BUILDID", None),
            build_uri=text("BUILD_BUILDURI", None),
        )

    def build_tags(self) -> Dict[str, str]:
        """``BuildId`` / ``BuildUri`` run tags for the CI build, when there is one."""
        tags = {"BuildId": self.build_id, "BuildUri": self.build_uri}
        return {key: value for key, value in tags.items() if value}


@dataclass(frozen=True)
class ScoringSettings:
    """Where the local scoring service runs."""

    service_name: str = "diabetes-local"
    port: int = 0

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "ScoringSettings":
        """Read LOCAL_DEPLOYMENT_NAME and LOCAL_SCORING_PORT (0: any free port)."""
        env = os.environ if env is None else env
        port = env.get("LOCAL_SCORING_PORT", "").strip()
        return cls(service_name=env.get("LOCAL_DEPLOYMENT_NAME", "").strip() or cls.service_name,
                   port=parse_port(port, "LOCAL_SCORING_PORT") if port else cls.port)
