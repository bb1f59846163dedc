"""`otprobe profiles list` (where each profile is read from), `profiles copy` (a site profile from a shipped one)
and shell completion, run as a user runs them: the installed command in a child process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from cli_helpers import PROFILES_DIR, Completed, plain_env, run_otprobe

from otprobe.profile import load_profile

OTPROBE = Path(sys.executable).with_name("otprobe")
SHIPPED = sorted(path.stem for path in PROFILES_DIR.glob("*.yaml"))


def rows(stdout: str) -> dict[str, list[str]]:
    """The table's rows by name: name, source, file, description (a wrapped description continues below)."""
    found: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        if len(cells) == 4 and cells[0] and cells[0] != "name":
            found[cells[0]] = cells
    return found


async def test_list_names_the_file_each_shipped_profile_is_read_from(tmp_path: Path) -> None:
    done = await run_otprobe("profiles", "list", env=plain_env(tmp_path, COLUMNS="400"))
    assert done.code == 0, done.stderr
    listed = rows(done.stdout)
    assert sorted(listed) == SHIPPED
    for name, (_, source, file, description) in listed.items():
        assert source == "shipped"
        assert Path(file).is_absolute() and Path(file).parent == PROFILES_DIR.resolve()
        loaded = load_profile(Path(file))
        assert (loaded.name, loaded.description) == (name, description)


async def test_list_adds_user_profiles_from_files_and_folders_and_flags_invalid_ones(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    good = await run_otprobe("profiles", "copy", "default", str(site / "plant-a.yaml"), env=plain_env(tmp_path))
    assert good.code == 0, good.stderr
    (site / "broken.yml").write_text("name: [\n")
    (site / "notes.txt").write_text("not a profile")
    single = tmp_path / "other.yaml"
    single.write_text((site / "plant-a.yaml").read_text().replace('name: "plant-a"', "name: other"))
    done = await run_otprobe("profiles", "list", str(site), str(single), env=plain_env(tmp_path, COLUMNS="400"))
    listed = rows(done.stdout)
    assert sorted(listed) == sorted([*SHIPPED, "plant-a", "broken", "other"])
    assert listed["plant-a"][1:3] == ["user", str((site / "plant-a.yaml").resolve())]
    assert listed["other"][1:3] == ["user", str(single.resolve())]
    assert listed["broken"][3].startswith("invalid: ") and "YAML syntax error" in listed["broken"][3]
    assert done.code == 2  # one invalid profile: the listing says so in its exit code


async def test_list_of_a_missing_path_is_one_error_line(tmp_path: Path) -> None:
    done = await run_otprobe("profiles", "list", str(tmp_path / "nowhere"), env=plain_env(tmp_path))
    assert done.code == 2 and done.stdout == ""
    assert done.stderr.strip() == f"otprobe: error: {tmp_path / 'nowhere'}: no such profile file or folder"


@pytest.mark.parametrize("shipped", SHIPPED)
async def test_copy_keeps_comments_and_values_and_empties_the_scope(tmp_path: Path, shipped: str) -> None:
    target = tmp_path / "site-a.yaml"
    done = await run_otprobe("profiles", "copy", shipped, str(target), env=plain_env(tmp_path))
    assert done.code == 0, done.stderr
    original, copy = (PROFILES_DIR / f"{shipped}.yaml").read_text(), target.read_text()
    comments = [line.strip() for line in original.splitlines() if line.strip().startswith("#")]
    assert comments and all(comment in copy for comment in comments)
    before, after = load_profile(shipped), load_profile(target)
    assert after.name == "site-a" and after.scope.include == []
    assert after.scope.exclude == before.scope.exclude  # exclusions are safety: kept
    dump = {"name", "scope"}
    assert after.model_dump(exclude=dump) == before.model_dump(exclude=dump)
    checked = await run_otprobe("profiles", "check", str(target), env=plain_env(tmp_path))
    assert checked.code == 0, checked.stderr
    # the copy refuses every target until scope.include is set
    plan = await run_otprobe("plan", "127.0.161.1", "--profile", str(target), env=plain_env(tmp_path))
    assert plan.code == 3 and "scope.include is empty" in plan.stderr


async def test_copy_never_overwrites_a_file(tmp_path: Path) -> None:
    target = tmp_path / "site.yaml"
    target.write_text("# someone's site profile\n")
    done = await run_otprobe("profiles", "copy", "lab", str(target), env=plain_env(tmp_path))
    assert done.code == 2 and target.read_text() == "# someone's site profile\n"
    assert done.stderr.strip() == f"otprobe: error: {target}: already exists; not overwritten (choose another file " \
                                  "name)"


@pytest.mark.parametrize(("name", "message"), [
    ("nope", "unknown shipped profile 'nope' (shipped: default, inventory-refresh, lab, maintenance-window)"),
    ("profiles/lab.yaml", "unknown shipped profile 'profiles/lab.yaml'"),
])
async def test_copy_of_an_unknown_profile_is_one_error_line(tmp_path: Path, name: str, message: str) -> None:
    done = await run_otprobe("profiles", "copy", name, str(tmp_path / "x.yaml"), env=plain_env(tmp_path))
    assert done.code == 2 and not (tmp_path / "x.yaml").exists()
    assert done.stderr.startswith(f"otprobe: error: {message}") and len(done.stderr.splitlines()) == 1


async def test_copy_into_a_missing_folder_is_one_error_line(tmp_path: Path) -> None:
    done = await run_otprobe("profiles", "copy", "lab", str(tmp_path / "no" / "x.yaml"), env=plain_env(tmp_path))
    assert done.code == 2
    assert done.stderr.startswith(f"otprobe: error: {tmp_path / 'no' / 'x.yaml'}: cannot write the copy")


# -- shell completion ------------------------------------------------------------------------------------------

async def test_show_completion_prints_the_script_of_the_shell_it_runs_in(tmp_path: Path) -> None:
    # run from bash (not exec'd: the shell is found among the command's parent processes)
    done = await run_completion(tmp_path, "bash", "-c", f"{OTPROBE} --show-completion; exit $?")
    assert done.code == 0, done.stderr
    assert "_OTPROBE_COMPLETE=complete_bash" in done.stdout and "complete -o default -F" in done.stdout


@pytest.mark.parametrize(("shell", "marker"),
                         [("bash", "complete_bash"), ("zsh", "compdef"), ("fish", "complete_fish")])
async def test_a_named_shells_script(tmp_path: Path, shell: str, marker: str) -> None:
    done = await run_completion(tmp_path, str(OTPROBE), _OTPROBE_COMPLETE=f"source_{shell}")
    assert done.code == 0 and marker in done.stdout, done.stderr


@pytest.mark.parametrize(("words", "cword", "expected"), [
    ("otprobe prof", 1, ["profiles"]),
    ("otprobe profiles c", 2, ["copy", "check"]),
    ("otprobe profiles copy ", 3, SHIPPED),
    ("otprobe profiles copy ma", 3, ["maintenance-window"]),
])
async def test_completion_offers_commands_and_shipped_profiles(tmp_path: Path, words: str, cword: int,
                                                               expected: list[str]) -> None:
    done = await run_completion(tmp_path, str(OTPROBE), _OTPROBE_COMPLETE="complete_bash", COMP_WORDS=words,
                                COMP_CWORD=str(cword))
    assert done.code == 0, done.stderr
    assert sorted(done.stdout.split()) == sorted(expected)


async def run_completion(tmp_path: Path, *command: str, **env: str) -> Completed:
    """`command` with `env` added; completion runs the installed `otprobe`, as it keys on the program's name."""
    process = await asyncio.create_subprocess_exec(*command, env=plain_env(tmp_path, **env),
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Completed(process.returncode, out.decode(), err.decode())

