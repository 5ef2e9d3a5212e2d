"""The one folder walker: symbolic links followed, loops guarded, every other file counted."""

import os
from pathlib import Path

from PIL import Image

from sdaie.data.walk import FolderListing, ignored_text, iter_images, scan_folder


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)
    return path


def _tree(root: Path) -> None:
    _png(root / "a.png")
    _png(root / "sub" / "b.PNG")
    (root / "notes.txt").write_text("x")
    (root / "sub" / "more.txt").write_text("x")
    (root / "clip.mov").write_bytes(b"x")
    (root / "README").write_text("x")
    (root / ".DS_Store").write_bytes(b"x")
    _png(root / ".hidden" / "c.png")  # hidden folders are not entered


def test_images_and_every_other_file_counted(tmp_path):
    _tree(tmp_path / "photos")
    listing = scan_folder(tmp_path / "photos")
    assert [p.relative_to(tmp_path / "photos").as_posix() for p in listing.images] == \
        ["a.png", "sub/b.PNG"]
    assert dict(listing.ignored) == {".txt": 2, ".mov": 1, "no extension": 1, "hidden": 2}
    assert listing.ignored_text() == "ignored: 2 .txt, 2 hidden, 1 .mov, 1 no extension"


def test_iter_images_is_the_listing_one_file_at_a_time(tmp_path):
    _tree(tmp_path / "photos")
    _png(tmp_path / "photos" / "a-b" / "c.png")  # "a-b/" sorts before "a.png" as a string
    listing = FolderListing()
    walked = iter_images(tmp_path / "photos", listing)
    first = next(walked)  # a generator: one Path at a time, nothing collected
    assert not listing.images
    whole = scan_folder(tmp_path / "photos")
    assert sorted([first, *walked]) == whole.images and len(whole.images) == 3
    assert dict(listing.ignored) == dict(whole.ignored)


def test_symlinked_folders_give_the_same_files(tmp_path):
    store = tmp_path / "store"
    _tree(store)
    (tmp_path / "link").symlink_to(store, target_is_directory=True)
    nested = tmp_path / "tree"
    nested.mkdir()
    (nested / "inner").symlink_to(store, target_is_directory=True)
    (nested / "one.png").symlink_to(store / "a.png")  # a link to a file is a file
    direct = scan_folder(store)
    via_link = scan_folder(tmp_path / "link")
    assert [p.name for p in via_link.images] == [p.name for p in direct.images]
    assert via_link.ignored == direct.ignored
    inner = scan_folder(nested)
    assert sorted(p.relative_to(nested).as_posix() for p in inner.images) == \
        ["inner/a.png", "inner/sub/b.PNG", "one.png"]


def test_loops_and_repeated_links_are_walked_once(tmp_path):
    root = tmp_path / "root"
    _png(root / "x" / "a.png")
    (root / "x" / "up").symlink_to(root, target_is_directory=True)  # a loop back to the root
    (root / "again").symlink_to(root / "x", target_is_directory=True)  # x a second time
    listing = scan_folder(root)
    # sorted walk: 'again' (= x) first, then x itself and x/up (= root) are revisits
    assert [p.relative_to(root).as_posix() for p in listing.images] == ["again/a.png"]
    assert sorted(p.relative_to(root).as_posix() for p in listing.revisits) == ["again/up", "x"]


def test_broken_links_are_counted(tmp_path):
    _png(tmp_path / "a.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    os.symlink(tmp_path / "gone_dir", tmp_path / "dangling_dir")
    listing = scan_folder(tmp_path)
    assert [p.name for p in listing.images] == ["a.png"]
    assert listing.ignored["broken link"] == 2


def test_ignored_text_is_empty_without_ignored_files():
    assert ignored_text({}) == "" and FolderListing().ignored_text() == ""


def test_unreadable_folders_and_revisits_are_counted(tmp_path, monkeypatch):
    """A folder that cannot be listed (permissions: root reads anything, so the listing is made
    to fail) and a folder reached again through a link appear in the counts and the text."""
    root = tmp_path / "root"
    _png(root / "a.png")
    _png(root / "locked" / "b.png")
    (root / "x").symlink_to(root / "locked", target_is_directory=True)
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    listing = scan_folder(root)
    assert [p.name for p in listing.images] == ["a.png"]
    assert dict(listing.ignored) == {"unreadable folder": 1,
                                     "folder reached again through a link": 1}
    assert listing.ignored_text() == \
        "ignored: 1 folder reached again through a link, 1 unreadable folder"
    assert ignored_text({"unreadable folder": 2, "folder reached again through a link": 3}) == \
        "ignored: 3 folders reached again through links, 2 unreadable folders"
