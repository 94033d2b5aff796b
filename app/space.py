"""Write a Hugging Face Space of LeWM Lab: a fresh git repository holding only what the Space runs.

    python app/space.py OUT [--sdk gradio|docker] [--source-url URL]    (or: make space OUT=dir)

OUT gets app/, lewm_core/, decoder/, the shipped models (assets/models/), the figures the apps
show before anything is computed (docs/figures/: figures.json with the captions, the diagram and
the rollout GIFs that `make figures` draws), pyproject.toml, packages.txt (the EGL libraries
MuJoCo renders with), and the files written for the Space:

    requirements.txt  the runtime pins of this repository with torch's CPU build (PyTorch's CPU
                      index as an extra index; PyPI's Linux torch brings several GB of CUDA
                      libraries a CPU Space never uses); no test or lint tools
    README.md         YAML front matter, the Space's configuration: sdk_version is read from the
                      gradio pin of requirements.txt and python_version from pyproject.toml
    .gitattributes    *.safetensors, and any other file over 10 MB, stored with Git LFS
    demo.py           (gradio) the app_file: starts app/gradio_app.py with the tree's root on
                      the import path, as Python does for a script

and is committed once, with no history: a Space refuses a push whose history holds a file over
10 MB outside LFS. Without git-lfs the files are written but not committed, and the script says
what to run. `--sdk docker` adds the Dockerfile (and a .dockerignore that keeps .git out of the
image) instead: the Space serves the Streamlit lab in public mode (LEWM_PUBLIC=1;
docs/deploy.md). Nothing here imports the project's packages.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LFS_LIMIT = 10 * 1024 * 1024  # bytes: a Space refuses larger files outside Git LFS
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SOURCE_FOLDERS = ("app", "lewm_core", "decoder", "assets/models")
SOURCE_FILES = ("pyproject.toml", "packages.txt")
# The figures the demo and the lab's Welcome page show (app/showcase.py reads them), as globs:
# the index of captions, the diagram, the rollout GIFs. The other figures are the README's.
SOURCE_FIGURES = (
    "docs/figures/figures.json",
    "docs/figures/architecture.png",
    "docs/figures/*.gif",
)
SKIPPED_PARTS = ("__pycache__", ".ipynb_checkpoints")
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".tmp")
LFS_ATTRIBUTES = "filter=lfs diff=lfs merge=lfs -text"
SPACE_COLOURS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
SDKS = ("gradio", "docker")
DOCKER_PORT = 7860  # the Dockerfile's EXPOSE; a docker Space needs it as app_port
SHORT_DESCRIPTION_MAX = 60  # characters, the Hub's limit
# the Space's card; sdk, sdk_version, python_version, app_file and app_port are added per sdk
CARD = {
    "title": "LeWM Lab",
    "emoji": "🧭",
    "colorFrom": "indigo",
    "colorTo": "red",
    "pinned": False,
    "license": "mit",
    "short_description": "LeWorldModel, a JEPA world model that plans from pixels",
}


class SpaceError(Exception):
    """A Space that cannot be written as asked; the message says why and what to do."""


# --------------------------------------------------------------------------- reading the repository
def _pins(path: Path) -> dict[str, str]:
    """{lower-case package name: version} of the `name==version` lines of a requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)", line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def dev_tools(root: Path = ROOT) -> set[str]:
    """The packages requirements-dev.txt pins itself (the test and lint tools)."""
    return set(_pins(root / "requirements-dev.txt"))


def space_requirements(root: Path = ROOT) -> str:
    """requirements.txt for the Space: the runtime pins with torch's CPU build.

    Raises SpaceError when requirements.txt holds no exact torch or gradio pin, or a test tool.
    """
    text = (root / "requirements.txt").read_text()
    pins = _pins(root / "requirements.txt")
    for name in ("torch", "gradio"):
        if name not in pins:
            raise SpaceError(f"requirements.txt has no exact pin of {name} (`{name}==<version>`)")
    tools = sorted(dev_tools(root) & set(pins))
    if tools:
        raise SpaceError(
            f"requirements.txt pins the test tools {', '.join(tools)}: move them to "
            "requirements-dev.txt (the Space installs requirements.txt)"
        )
    cpu = pins["torch"].split("+")[0] + "+cpu"
    lines = [
        "# Written by app/space.py from the repository's requirements.txt: torch's CPU build",
        "# from PyTorch's CPU index; every other package from PyPI.",
        f"--extra-index-url {TORCH_CPU_INDEX}",
    ]
    for line in text.splitlines():
        if re.match(r"^\s*torch\s*==", line):
            line = f"torch=={cpu}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def python_version(root: Path = ROOT) -> str:
    """The lowest Python of pyproject.toml's requires-python (">=3.11" -> "3.11")."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    m = re.search(r">=\s*(\d+\.\d+)", project.get("requires-python", ""))
    if not m:
        raise SpaceError("pyproject.toml's requires-python names no lowest version (>=3.x)")
    return m.group(1)


# The gradio Space runs `python <app_file>` without installing the repository: a launcher at the
# tree's root puts the root on the import path the way Python does for any script, so `app`,
# `lewm_core` and `decoder` import as packages. (Not `app.py`: that name would hide `app/`.)
LAUNCHER = "demo.py"
LAUNCHER_SOURCE = '''"""The Space's entry point: the Gradio demo of LeWM Lab (app/gradio_app.py)."""

from app.gradio_app import main

main()
'''


def front_matter(sdk: str, root: Path = ROOT) -> dict:
    """The Space's YAML configuration for `sdk` ("gradio": the demo; "docker": the lab)."""
    meta = dict(CARD)
    meta["sdk"] = sdk
    if sdk == "gradio":
        meta["sdk_version"] = _pins(root / "requirements.txt")["gradio"]
        meta["python_version"] = python_version(root)
        meta["app_file"] = LAUNCHER
    else:
        meta["app_port"] = DOCKER_PORT
    return meta


def check_front_matter(readme: str, tree: Path) -> dict:
    """Parse the front matter of `readme` and check it as the Hub reads it; return it.

    Raises SpaceError naming every problem: no `---` block, YAML that does not parse, a missing
    key, an sdk_version other than the gradio pin, an app_file that is not in `tree`, ...
    """
    import yaml  # PyYAML: installed with gradio

    m = re.match(r"^---\n(.*?)\n---\n", readme, re.S)
    if not m:
        raise SpaceError("README.md does not start with a front matter block between '---' lines")
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError as e:
        raise SpaceError(f"README.md's front matter is not valid YAML: {e}") from None
    if not isinstance(meta, dict):
        raise SpaceError("README.md's front matter is not a mapping of keys to values")
    problems = []
    need = ["title", "sdk", "colorFrom", "colorTo"]
    sdk = meta.get("sdk")
    if sdk == "gradio":
        need += ["sdk_version", "python_version", "app_file"]
    elif sdk == "docker":
        need += ["app_port"]
    else:
        problems.append(f"sdk is {sdk!r}, not one of {', '.join(SDKS)}")
    problems += [f"{key} is missing" for key in need if meta.get(key) in (None, "")]
    for key in ("colorFrom", "colorTo"):
        if key in meta and meta[key] not in SPACE_COLOURS:
            problems.append(f"{key} {meta[key]!r} is not one of {', '.join(SPACE_COLOURS)}")
    if len(str(meta.get("short_description", ""))) > SHORT_DESCRIPTION_MAX:
        problems.append(f"short_description is over {SHORT_DESCRIPTION_MAX} characters")
    if sdk == "gradio":
        pinned = _pins(tree / "requirements.txt").get("gradio")
        if str(meta.get("sdk_version")) != pinned:
            problems.append(f"sdk_version {meta.get('sdk_version')} is not the gradio pin {pinned}")
        if not isinstance(meta.get("python_version"), str):
            problems.append("python_version must be a quoted string (3.10 would read as 3.1)")
        if meta.get("app_file") and not (tree / str(meta["app_file"])).is_file():
            problems.append(f"app_file {meta['app_file']} is not in the tree")
    if sdk == "docker" and not (tree / "Dockerfile").is_file():
        problems.append("sdk docker needs a Dockerfile at the top of the tree")
    if problems:
        raise SpaceError("README.md's front matter: " + "; ".join(problems))
    return meta


def _yaml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9 ._/-]*", text) and not re.fullmatch(
        r"(?i)(true|false|yes|no|on|off|null)", text
    ):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def readme(meta: dict, source_url: str | None) -> str:
    """README.md of the Space: the front matter, then a short description with a link home."""
    head = "\n".join(f"{key}: {_yaml_value(value)}" for key, value in meta.items())
    where = (
        f"The source, the command line `lewm` and the full documentation: <{source_url}>."
        if source_url
        else "The source, the command line `lewm` and the full documentation are in the LeWM "
        "Lab repository this Space was built from (`make space`)."
    )
    if meta["sdk"] == "gradio":
        what = (
            "This Space is its compact demo (`app/gradio_app.py`): pick a task and a seed, plan "
            "to a goal with the cross-entropy method through the shipped model, and watch the "
            "model's surprise when the agent is teleported. Its endpoints `/plan` and "
            "`/surprise` work with `gradio_client`."
        )
    else:
        what = (
            "This Space serves the full Streamlit lab (collect data, train, plan, decode, probe "
            "the latent space) in public mode: each visitor works in a scratch folder of their "
            "own, deleted when they leave, and training jobs wait in a queue."
        )
    return (
        f"---\n{head}\n---\n\n# LeWM Lab\n\n"
        "**LeWorldModel** (LeWM) is a JEPA world model trained end to end from raw pixels with "
        "next-embedding prediction and SIGReg, a regulariser that keeps its embeddings from "
        "collapsing; it plans in its latent space. "
        f"{what}\n\nThe shipped models and their cards are in `assets/models/<task>/`. {where}\n"
    )


def git_source_url(root: Path = ROOT) -> str | None:
    """The https address of this repository's `origin` remote, if it has one."""
    try:
        url = subprocess.run(
            ["git", "-C", str(root), "remote", "get-url", "origin"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    m = re.fullmatch(r"git@([^:]+):(.+?)(\.git)?", url)
    if m:
        return f"https://{m.group(1)}/{m.group(2)}"
    if url.startswith("https://"):
        return url.removesuffix(".git")
    return None


# --------------------------------------------------------------------------- writing the tree
def _copied(root: Path, sdk: str) -> list[Path]:
    """Paths (relative to `root`) of the repository files the Space gets, sorted."""
    files = [Path(name) for name in SOURCE_FILES]
    if sdk == "docker":
        files.append(Path("Dockerfile"))
    for folder in SOURCE_FOLDERS:
        for path in (root / folder).rglob("*"):
            rel = path.relative_to(root)
            if (
                path.is_file()
                and not any(part in SKIPPED_PARTS or part.startswith(".") for part in rel.parts)
                and path.suffix not in SKIPPED_SUFFIXES
            ):
                files.append(rel)
    for pattern in SOURCE_FIGURES:
        found = sorted(p.relative_to(root) for p in root.glob(pattern) if p.is_file())
        files += found or [Path(pattern)]  # a pattern that matches nothing is reported missing
    missing = [str(f) for f in files if not (root / f).is_file()]
    if missing:
        drawn = any(m.startswith("docs/figures/") for m in missing)
        hint = " (`make figures` draws docs/figures/)" if drawn else ""
        raise SpaceError(f"the repository lacks {', '.join(missing)}{hint}")
    return sorted(files)


def gitattributes(tree: Path) -> str:
    """.gitattributes: every *.safetensors, and any other file over 10 MB, in Git LFS."""
    lines = [
        "# Git LFS: a Space refuses files over 10 MB outside it.",
        f"*.safetensors {LFS_ATTRIBUTES}",
    ]
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree)
        if path.is_file() and path.suffix != ".safetensors" and path.stat().st_size > LFS_LIMIT:
            lines.append(f"/{rel.as_posix().replace(' ', '[[:space:]]')} {LFS_ATTRIBUTES}")
    return "\n".join(lines) + "\n"


def check_out(out: Path, root: Path = ROOT) -> Path:
    """`out` resolved, if it is a new or empty folder outside the copied sources."""
    out = out.expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SpaceError(
            f"{out} exists and is not empty: give a new folder (the Space is a fresh repository "
            "with one commit)"
        )
    for folder in SOURCE_FOLDERS:
        source = (root / folder).resolve()
        if out == source or source in out.parents:
            raise SpaceError(f"{out} lies inside {folder}/, which is copied: choose another folder")
    return out


def _git(tree: Path, *args: str, identity: bool = False) -> str:
    cmd = ["git"]
    if identity:  # the commit needs an author; a user without one configured gets a neutral one
        if not _git_config("user.email", tree):
            cmd += ["-c", "user.name=LeWM Lab", "-c", "user.email=lewm-lab@localhost"]
    cmd += ["-C", str(tree), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SpaceError(f"`git {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def _git_config(key: str, tree: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree), "config", key], capture_output=True, text=True)
    return done.stdout.strip()


def has_git_lfs() -> bool:
    """Is the git-lfs extension installed (`git lfs version` answers)?"""
    try:
        done = subprocess.run(["git", "lfs", "version"], capture_output=True, text=True)
    except OSError:
        return False
    return done.returncode == 0


def large_blobs(tree: Path) -> list[tuple[str, int]]:
    """(path, size) of the committed blobs over 10 MB (LFS pointers are a few hundred bytes)."""
    listing = _git(tree, "ls-tree", "-r", "-l", "HEAD")
    found = []
    for line in listing.splitlines():
        meta, _, path = line.partition("\t")
        size = meta.split()[3]
        if size != "-" and int(size) > LFS_LIMIT:
            found.append((path, int(size)))
    return found


def write_space(
    out: Path, sdk: str = "gradio", source_url: str | None = None, root: Path = ROOT
) -> dict:
    """Write the Space to `out` (new or empty) and commit it once if git-lfs is installed.

    Returns {out, sdk, files, lfs_files, committed, front_matter}. Raises SpaceError on a bad
    request (OUT not empty, unknown sdk, ...) and when the commit would hold a file over 10 MB.
    """
    if sdk not in SDKS:
        raise SpaceError(f"unknown sdk {sdk!r}; choose one of {', '.join(SDKS)}")
    if shutil.which("git") is None:
        raise SpaceError("git is not installed (apt-get install git)")
    out = check_out(out, root)
    requirements = space_requirements(root)
    meta = front_matter(sdk, root)
    files = _copied(root, sdk)
    out.mkdir(parents=True, exist_ok=True)
    for rel in files:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, out / rel)
    (out / "requirements.txt").write_text(requirements)
    if sdk == "gradio":
        (out / LAUNCHER).write_text(LAUNCHER_SOURCE)
    (out / "README.md").write_text(readme(meta, source_url))
    check_front_matter((out / "README.md").read_text(), out)
    if sdk == "docker":  # `COPY . .` would bring .git (the weights again, as LFS objects)
        (out / ".dockerignore").write_text(".git\n")
    (out / ".gitattributes").write_text(gitattributes(out))

    lfs = has_git_lfs()
    _git(out, "init", "--quiet", "--initial-branch", "main")
    committed = False
    lfs_files: list[str] = []
    if lfs:
        _git(out, "lfs", "install", "--local")
        _git(out, "add", "--all")
        _git(out, "commit", "--quiet", "-m", f"LeWM Lab Space ({sdk})", identity=True)
        committed = True
        lfs_files = _git(out, "lfs", "ls-files", "--name-only").split()
        big = large_blobs(out)
        if big:
            raise SpaceError(
                "the commit holds files over 10 MB outside LFS: "
                + ", ".join(f"{p} ({s / 1e6:.1f} MB)" for p, s in big)
            )
    return {
        "out": out,
        "sdk": sdk,
        # + requirements.txt, README.md, .gitattributes and the launcher or .dockerignore
        "files": len(files) + 4,
        "lfs_files": lfs_files,
        "committed": committed,
        "front_matter": meta,
    }


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, write the Space, print what was done and how to push it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="a new (or empty) folder for the Space")
    parser.add_argument(
        "--sdk",
        choices=SDKS,
        default="gradio",
        help="gradio: the compact demo (default); docker: the Streamlit lab in public mode",
    )
    parser.add_argument(
        "--source-url",
        help="the project's address, linked from the Space's README (default: git's origin)",
    )
    args = parser.parse_args(argv)
    try:
        done = write_space(args.out, args.sdk, args.source_url or git_source_url())
    except SpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = done["out"]
    print(f"wrote the {done['sdk']} Space to {out} ({done['files']} files)")
    if not done["committed"]:
        print(
            "git-lfs is not installed: the files and .gitattributes are written but not "
            "committed (without LFS the commit would hold the 17 MB model files a Space "
            "refuses). Install it (apt-get install git-lfs), then:\n"
            f"  cd {out} && git lfs install --local && git add --all && git commit -m 'LeWM Lab'",
            file=sys.stderr,
        )
        return 0
    print(f"one commit, {len(done['lfs_files'])} files in Git LFS. To publish it:")
    print(f"  cd {out}")
    print("  git remote add space https://huggingface.co/spaces/<user>/<space>")
    print("  git push --force space main    # docs/deploy.md: creating the Space, the token")
    return 0


if __name__ == "__main__":
    sys.exit(main())
