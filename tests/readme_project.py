"""A blank Django project, set up by the README's "Add it to your project" section as written.

``readme_steps()`` extracts the section's code blocks from README.md: a Python block whose first
line is ``# <path>: add at the end``, ``# <path>: replace the file`` or ``# <path>: new file`` is
applied to that file of the project; a shell block's ``python manage.py ...`` lines are run. So
the README cannot drift from what the tests check (tests/test_readme_project.py).

``fresh_venv()`` builds a wheel from this checkout and installs it into a new virtual
environment, as a user would (``pip install`` of the package, its dependencies from the
registry); ``BlankProject`` is ``django-admin startproject mysite`` in that environment.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SECTION = "## Add it to your project"
#: The subsection that only the "own consumer and page" variant applies.
OWN_CONSUMER = "### Your own consumer and page"
#: The subsection that sets nothing up (a LangChain-only project is tested on its own).
LANGCHAIN_ONLY = "### Only the LangChain chat history"

_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_TARGET = re.compile(r"^# (?P<path>[\w./-]+): (?P<action>add at the end|replace the file|new file)\n")


@dataclass(frozen=True)
class Step:
    """One code block of the section: a file edit (``path``, ``action``) or shell ``commands``."""

    subsection: str
    path: str = ""
    action: str = ""
    code: str = ""
    commands: tuple[str, ...] = ()


def readme_section(text: str | None = None) -> str:
    text = README.read_text() if text is None else text
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else None]


def readme_steps(text: str | None = None) -> list[Step]:
    """The section's code blocks, in order, each with the ``###`` subsection it sits in."""
    section = readme_section(text)
    steps = []
    for match in _BLOCK.finditer(section):
        heading = [line for line in section[: match.start()].splitlines() if line.startswith("### ")]
        subsection = heading[-1] if heading else ""
        language, body = match.group(1), match.group(2)
        if language == "python":
            target = _TARGET.match(body)
            if target is None:
                raise ValueError(f"A Python block of the README names no file:\n{body[:200]}")
            steps.append(Step(subsection, target["path"], target["action"], body[target.end() :]))
        elif language == "sh":
            lines = tuple(line.split("#")[0].strip() for line in body.splitlines())
            steps.append(Step(subsection, commands=tuple(line for line in lines if line)))
    return steps


def build_wheel(directory: Path) -> Path:
    """``pip wheel`` of this checkout (no dependencies) into ``directory``; returns the wheel."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(directory), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    return next(directory.glob("pyhub_ai-*.whl"))


def fresh_venv(directory: Path, wheel: Path) -> Path:
    """A new virtual environment with ``wheel`` installed as a user would; returns its ``bin``."""
    venv.create(directory / "venv", with_pip=True)
    bin_dir = directory / "venv" / "bin"
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        check=True, capture_output=True, text=True,
    )
    return bin_dir


def clean_environment(bin_dir: Path) -> dict[str, str]:
    """The environment of a user's shell with the venv activated: none of the demo's or the
    tests' settings, no model credentials (so the offline model answers)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "PYHUB_AI_", "OPENAI_", "PYTHON", "DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(bin_dir.parent)
    return env


class BlankProject:
    """``django-admin startproject mysite`` in ``directory``, run with the venv of ``bin_dir``."""

    def __init__(self, directory: Path, bin_dir: Path) -> None:
        self.directory = directory
        self.bin_dir = bin_dir
        self.env = clean_environment(bin_dir)
        directory.mkdir(parents=True)
        self.run(str(bin_dir / "django-admin"), "startproject", "mysite", ".")

    def run(self, *command: str, input: str | None = None) -> subprocess.CompletedProcess:
        """Run ``command`` in the project folder; raise with its output when it fails."""
        result = subprocess.run(command, cwd=self.directory, env=self.env, input=input, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def manage(self, *arguments: str, input: str | None = None) -> subprocess.CompletedProcess:
        return self.run(str(self.bin_dir / "python"), "manage.py", *arguments, input=input)

    def apply(self, step: Step) -> None:
        """Apply one README step: edit a file, or run its ``python manage.py`` commands (the
        interactive ``createsuperuser`` is done by ``create_user()``; the server by the test)."""
        if step.path:
            path = self.directory / step.path
            path.parent.mkdir(parents=True, exist_ok=True)
            if step.action == "add at the end":
                path.write_text(path.read_text() + "\n" + step.code)
            else:
                path.write_text(step.code)
            return
        for command in step.commands:
            words = command.split()
            if words[:2] == ["python", "manage.py"] and words[2] not in ("createsuperuser", "runserver"):
                self.manage(*words[2:])

    def create_user(self, username: str, password: str, *, staff: bool) -> None:
        self.manage(
            "shell", "-c",
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user({username!r}, password={password!r}, is_staff={staff}, is_superuser={staff})",
        )
