"""FolderSource against real files in tmp_path and the real watchfiles watcher."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path, PurePath

import pytest

from pilot.config.limits import ParseLimits
from pilot.config.objects import ConfigKey
from pilot.config.store import ConfigStore
from pilot.errors import ConfigError
from pilot.sources.base import ConfigSource
from pilot.sources.config_files import is_config_file, read_file
from pilot.sources.files import FolderSource
from tests.factories import service_entry_yaml

DEADLINE = 10.0


def service_entry(name: str, host: str = "httpbin.org") -> str:
    return service_entry_yaml(name, host, resolution="DNS", location="MESH_EXTERNAL")


def se_key(name: str) -> ConfigKey:
    return ConfigKey("ServiceEntry", "default", name)


async def eventually(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def running(source: FolderSource) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(source.run())
    try:
        await asyncio.wait_for(source.synced.wait(), DEADLINE)
        yield task
    finally:
        task.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 2.0, "the watcher must stop promptly"


def names(store: ConfigStore) -> set[str]:
    return {key.name for key in store.snapshot().objects}


def test_is_config_file():
    assert is_config_file(PurePath("a.yaml"))
    assert is_config_file(PurePath("sub/dir/b.YML"))
    assert is_config_file(PurePath("c.json"))
    assert not is_config_file(PurePath("notes.txt"))
    assert not is_config_file(PurePath(".hidden.yaml"))
    assert not is_config_file(PurePath(".git/config.yaml"))
    assert not is_config_file(PurePath("..data/a.yaml"))
    assert not is_config_file(PurePath("a.yaml~"))
    assert not is_config_file(PurePath(".#a.yaml"))
    assert not is_config_file(PurePath("#a.yaml#"))
    assert not is_config_file(PurePath(".a.yaml.swp"))
    assert not is_config_file(PurePath("4913"))  # vim's write test


def test_folder_source_is_a_config_source(tmp_path: Path):
    source: ConfigSource = FolderSource(tmp_path, ConfigStore())
    assert not source.synced.is_set()


async def test_initial_load_is_recursive_sorted_and_skips_what_is_not_config(tmp_path: Path):
    (tmp_path / "b.yaml").write_text(service_entry("b"))
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "a.yml").write_text(service_entry("a") + "---\n" + service_entry("a2"))
    (tmp_path / "c.json").write_text(
        '{"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",'
        ' "metadata": {"name": "c", "namespace": "default"},'
        ' "spec": {"hosts": ["c.example.com"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],'
        ' "resolution": "DNS"}}'
    )
    (tmp_path / ".hidden.yaml").write_text(service_entry("hidden"))
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.yaml").write_text(service_entry("in-git"))
    (tmp_path / "b.yaml~").write_text(service_entry("backup"))
    (tmp_path / "README.md").write_text("not config")
    store = ConfigStore()
    source = FolderSource(tmp_path, store)
    async with running(source):
        assert names(store) == {"a", "a2", "b", "c"}
        objects = store.snapshot().objects
        assert objects[se_key("a")].origin == "sub/deeper/a.yml"
        assert objects[se_key("b")].origin == "b.yaml"
        # Sorted load order: b.yaml, c.json, then sub/deeper/a.yml → revisions follow it.
        assert objects[se_key("b")].revision < objects[se_key("c")].revision < objects[se_key("a")].revision
        assert store.errors() == []


async def test_origins_are_relative_to_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "x.yaml").write_text(service_entry("x"))
    monkeypatch.chdir(tmp_path)
    store = ConfigStore()
    async with running(FolderSource("conf", store)):
        assert store.snapshot().objects[se_key("x")].origin == "x.yaml"
        (tmp_path / "conf" / "y.yaml").write_text(service_entry("y"))
        await eventually(lambda: se_key("y") in store.snapshot().objects, "y.yaml loaded")
        assert store.snapshot().objects[se_key("y")].origin == "y.yaml"


async def test_add_modify_break_fix_delete(tmp_path: Path):
    store = ConfigStore()
    async with running(FolderSource(tmp_path, store)):
        assert names(store) == set()
        path = tmp_path / "se.yaml"

        path.write_text(service_entry("se", host="one.example.com"))
        await eventually(lambda: se_key("se") in store.snapshot().objects, "se.yaml added")
        first_revision = store.revision

        path.write_text(service_entry("se", host="two.example.com"))
        await eventually(lambda: store.revision > first_revision, "se.yaml modified")
        good = store.snapshot().objects[se_key("se")]

        # A broken edit: the last good object stays, and the error names the file and line.
        path.write_text("kind: ServiceEntry\nmetadata: {name: se\nspec: [\n")
        await eventually(lambda: bool(store.errors()), "syntax error recorded")
        assert store.snapshot().objects[se_key("se")] is good
        error = store.errors()[0]
        assert error.origin == "se.yaml"
        assert error.severity == "error"

        # Fixed again: the error goes away.
        path.write_text(service_entry("se", host="three.example.com"))
        await eventually(lambda: not store.errors(), "error cleared")
        await eventually(lambda: store.snapshot().objects[se_key("se")] is not good, "fix applied")

        path.unlink()
        await eventually(lambda: se_key("se") not in store.snapshot().objects, "se.yaml deleted")
        assert store.errors() == []


async def test_editor_style_save_through_a_temp_file_and_rename(tmp_path: Path):
    store = ConfigStore()
    path = tmp_path / "vs.yaml"
    path.write_text(service_entry("old"))
    async with running(FolderSource(tmp_path, store)):
        assert names(store) == {"old"}
        temp = tmp_path / ".vs.yaml.tmp"
        temp.write_text(service_entry("new"))
        os.replace(temp, path)
        await eventually(lambda: names(store) == {"new"}, "renamed-over file applied")
        # Swap files and backups never become config.
        (tmp_path / ".vs.yaml.swp").write_text(service_entry("swap"))
        (tmp_path / "vs.yaml~").write_text(service_entry("backup"))
        (tmp_path / "marker.yaml").write_text(service_entry("marker"))
        await eventually(lambda: "marker" in names(store), "marker loaded")
        assert names(store) == {"new", "marker"}


async def test_forgetting_a_path_that_never_held_a_file_walks_no_other_path(tmp_path: Path):
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "a.yaml").write_text(service_entry("a"))
    store = ConfigStore()
    source = FolderSource(tmp_path, store)
    walked: list[int] = []

    class Watched(dict[PurePath, int]):
        def __iter__(self) -> Iterator[PurePath]:
            walked.append(1)
            return super().__iter__()

    async with running(source):
        source._generation = Watched(source._generation)
        source._forget(PurePath(".a.yaml.tmp"))  # a save's temporary file, renamed away
        assert walked == [] and names(store) == {"a"}
        source._forget(PurePath("team"))  # a folder that held files: they go
        assert walked and names(store) == set()


async def test_folders_moved_out_and_in(tmp_path: Path):
    watched = tmp_path / "watched"
    (watched / "team").mkdir(parents=True)
    (watched / "team" / "a.yaml").write_text(service_entry("a"))
    (watched / "team" / "b.yaml").write_text(service_entry("b"))
    outside = tmp_path / "outside"
    store = ConfigStore()
    async with running(FolderSource(watched, store)):
        assert names(store) == {"a", "b"}
        os.rename(watched / "team", outside)
        await eventually(lambda: names(store) == set(), "folder moved out")
        os.rename(outside, watched / "team2")
        await eventually(lambda: names(store) == {"a", "b"}, "folder moved back in")
        assert store.snapshot().objects[se_key("a")].origin == "team2/a.yaml"


async def test_unreadable_file_is_an_error_not_a_crash(tmp_path: Path):
    (tmp_path / "good.yaml").write_text(service_entry("good"))
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage")
    store = ConfigStore()
    async with running(FolderSource(tmp_path, store)) as task:
        assert names(store) == {"good"}
        errors = store.errors()
        assert [e.origin for e in errors] == ["binary.yaml"]
        assert "cannot read" in errors[0].message
        assert not task.done()


async def test_kubernetes_configmap_symlink_swap_triggers_a_rescan(tmp_path: Path):
    # The kubelet's layout: a.yaml -> ..data/a.yaml, ..data -> ..2024_1; updates swap ..data.
    (tmp_path / "..2024_1").mkdir()
    (tmp_path / "..2024_1" / "a.yaml").write_text(service_entry("a", host="v1.example.com"))
    os.symlink("..2024_1", tmp_path / "..data")
    os.symlink("..data/a.yaml", tmp_path / "a.yaml")
    store = ConfigStore()
    async with running(FolderSource(tmp_path, store)):
        assert names(store) == {"a"}
        before = store.snapshot().objects[se_key("a")]
        (tmp_path / "..2024_2").mkdir()
        (tmp_path / "..2024_2" / "a.yaml").write_text(service_entry("a", host="v2.example.com"))
        os.symlink("..2024_2", tmp_path / "..data_tmp")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        await eventually(lambda: store.snapshot().objects[se_key("a")] != before, "configmap update applied")


async def test_missing_folder_is_a_config_error(tmp_path: Path):
    source = FolderSource(tmp_path / "nope", ConfigStore())
    with pytest.raises(ConfigError, match="not a directory"):
        await source.run()
    assert not source.synced.is_set()


# --- symlinks, sizes, relative paths ------------------------------------------------------------------------


async def test_symlinks_are_followed_only_inside_the_folder(tmp_path: Path):
    config, elsewhere = tmp_path / "config", tmp_path / "elsewhere"
    config.mkdir()
    elsewhere.mkdir()
    (elsewhere / "secret.yaml").write_text(service_entry("outside"))
    (config / "real.yaml").write_text(service_entry("inside"))
    os.symlink(elsewhere / "secret.yaml", config / "leak.yaml")
    os.symlink("real.yaml", config / "alias.yaml")  # inside: followed (and a duplicate of real.yaml)
    store = ConfigStore()
    async with running(FolderSource(config, store)):
        assert names(store) == {"inside"}
        errors = {e.origin: e.message for e in store.errors()}
        assert "outside the config folder" in errors["leak.yaml"]
        assert "already loaded from alias.yaml" in errors["real.yaml"]
        assert not any(str(tmp_path) in str(e) for e in store.errors())
        # Pointing a link that was inside to a target outside: refused, the last good objects stay.
        os.symlink(elsewhere / "secret.yaml", config / "tmp-link")
        os.replace(config / "tmp-link", config / "alias.yaml")
        await eventually(lambda: any(e.origin == "alias.yaml" for e in store.errors()), "relinked")
        assert names(store) == {"inside"}


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path: Path):
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as stream:
        stream.truncate(50 * 1024 * 1024 * 1024)  # sparse: 50 GiB that a read would take minutes for
    started = time.monotonic()
    result = read_file(str(tmp_path), os.path.realpath(tmp_path), "huge.yaml", ParseLimits())
    assert time.monotonic() - started < 1
    assert result is not None and result.fatal and result.origin == "huge.yaml"
    assert "larger than 10 MiB" in result.errors[0].message


async def test_the_same_duplicate_wins_at_start_up_and_while_running(tmp_path: Path):
    (tmp_path / "10-later.yaml").write_text(service_entry("se", host="later.example.com"))
    store = ConfigStore()
    async with running(FolderSource(tmp_path, store)):
        (tmp_path / "00-first.yaml").write_text(service_entry("se", host="first.example.com"))
        await eventually(lambda: store.get(se_key("se")).origin == "00-first.yaml", "first wins")  # type: ignore[union-attr]
        running_errors = [(e.origin, e.message) for e in store.errors()]
    restarted = ConfigStore()
    async with running(FolderSource(tmp_path, restarted)):
        assert restarted.snapshot().objects[se_key("se")].origin == "00-first.yaml"
        assert [(e.origin, e.message) for e in restarted.errors()] == running_errors
        assert [origin for origin, _ in running_errors] == ["10-later.yaml"]


async def test_files_are_parsed_in_a_worker_process(tmp_path: Path):
    (tmp_path / "a.yaml").write_text(service_entry("a"))
    store = ConfigStore()
    spawn = multiprocessing.get_context("spawn")
    source = FolderSource(tmp_path, store, executor=lambda: ProcessPoolExecutor(1, mp_context=spawn))
    async with running(source):
        assert names(store) == {"a"}
        (tmp_path / "a.yaml").write_text("")  # emptied: the object stays until the file is deleted
        (tmp_path / "b.yaml").write_text(service_entry("b"))
        await eventually(lambda: names(store) == {"a", "b"}, "b.yaml loaded")
        await eventually(lambda: any(e.origin == "a.yaml" for e in store.errors()), "emptied a.yaml reported")
        (tmp_path / "a.yaml").unlink()
        await eventually(lambda: names(store) == {"b"}, "a.yaml deleted")
