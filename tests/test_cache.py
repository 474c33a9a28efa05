"""The cache's pure parts: URLs hosts may be given, the upload directory's
immutable objects, bundle lifetimes, and the inventory's cache settings."""

import os

import pytest

from fruixops.inventory import settings
from fruixops.rollout import cache
from fruixops.inventory import model as inventory
from fruixops.rollout import offline
from fruixops.errors import UserError


@pytest.mark.parametrize("url,want", [
    ("http://cache.example.org/fruix", "http://cache.example.org/fruix/"),
    ("https://10.0.0.5:8443/", "https://10.0.0.5:8443/"),
])
def test_cache_urls_end_in_a_slash(url, want):
    assert settings.check_url(url) == want


@pytest.mark.parametrize("url", ["ftp://x/", "http://x/a b/", "http://x/$(reboot)/",
                                 "http://x/../etc/", "http://x/?q=1", "file:///frx/"])
def test_cache_urls_the_receiver_would_refuse_are_refused_here(url):
    with pytest.raises(ValueError):
        settings.check_url(url)


def test_dir_target_writes_each_object_once_read_only(tmp_path):
    t = cache.DirTarget(tmp_path / "c")
    src = tmp_path / "src"
    src.write_bytes(b"x" * 5000)
    t.put_file("objects/a.tar", src)
    dest = tmp_path / "c/objects/a.tar"
    assert dest.read_bytes() == b"x" * 5000 and dest.stat().st_mode & 0o777 == 0o444
    assert t.has("objects/a.tar") and not t.has("objects/b.tar")
    assert [p.name for p in dest.parent.iterdir()] == ["a.tar"]     # no temporary left
    t.put_bytes("fruixops-cache", cache.MARKER, replace_different=True)
    inode = os.stat(tmp_path / "c/fruixops-cache").st_ino
    t.put_bytes("fruixops-cache", cache.MARKER, replace_different=True)
    assert os.stat(tmp_path / "c/fruixops-cache").st_ino == inode


@pytest.mark.parametrize("text,seconds", [("3600", 3600), ("90m", 5400), ("12h", 43200),
                                          ("7d", 604800), ("2w", 1209600)])
def test_bundle_lifetimes(text, seconds):
    assert offline.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "7 days", "-1d", "2y", "400d"])
def test_bad_bundle_lifetimes(text):
    with pytest.raises(UserError):
        offline.parse_duration(text)


def _inv(tmp_path, block):
    p = tmp_path / "inv.yaml"
    p.write_text("fruixops:\n" + block + "all:\n  hosts:\n    a: {}\n")
    return p


def test_inventory_cache_settings(tmp_path):
    inv = inventory.load(_inv(tmp_path, "  cache:\n    url: http://c.example/x\n"
                                        "    upload: cache-dir\n    parallel: 8\n"))
    c = inv.settings.cache
    assert c.url == "http://c.example/x/" and c.parallel == 8
    assert c.upload == str(tmp_path / "cache-dir")
    ssh = inventory.load(_inv(tmp_path, "  cache:\n    url: http://c/\n"
                                        "    upload: ssh://up@c:2222/srv/cache\n"))
    t = ssh.settings.cache
    assert t.upload == "ssh://up@c:2222/srv/cache" and settings.SSH_RE.match(t.upload)["port"] == "2222"


@pytest.mark.parametrize("block,where,words", [
    ("  cache:\n    url: ftp://c/\n", ":3:", "bad cache url"),
    ("  cache:\n    upload: d\n", ":3:", "lacks required field 'url'"),
    ("  cache:\n    url: http://c/\n    parallel: 0\n", ":4:", "parallel must be 1 to 32"),
    ("  cache:\n    url: http://c/\n    bucket: b\n", ":4:", "unknown field 'bucket'"),
])
def test_bad_cache_settings_say_where(tmp_path, block, where, words):
    with pytest.raises(UserError) as e:
        inventory.load(_inv(tmp_path, block))
    assert words in str(e.value) and where in str(e.value)


def test_cache_verify_rehashes_every_object_against_its_name(tmp_path):
    import hashlib
    t = cache.DirTarget(tmp_path / "c")
    good = tmp_path / "good"
    good.write_bytes(b"an item archive")
    sha = hashlib.sha256(b"an item archive").hexdigest()
    t.put_file(f"objects/{sha}.tar", good)
    t.put_file(f"deltas/{sha}.tar.zst", good)
    assert cache.verify(t) == ([], 2)
    bad = tmp_path / "c/objects" / f"{sha}.tar"
    os.chmod(bad, 0o644)
    bad.write_bytes(b"an item archivf")
    (tmp_path / "c/objects/notes.txt").write_text("x")
    problems, checked = cache.verify(t)
    assert checked == 2
    assert dict(problems).keys() == {"objects/notes.txt", f"objects/{sha}.tar"}
    assert "hashes to" in dict(problems)[f"objects/{sha}.tar"]
    problems, _ = cache.verify(t, repair=True)
    assert not bad.exists() and (tmp_path / "c/objects/notes.txt").exists()
    assert cache.verify(t)[1] == 1


def test_bundle_export_to_a_missing_directory_is_one_line(tmp_path):
    from conftest import inv_cmd, make_project
    inv = make_project(tmp_path / "p")
    proc = inv_cmd(inv, "bundle.export", "--host", "web1", "--out", str(tmp_path / "no/such/b"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "no directory" in proc.stderr


def test_a_cache_directory_that_cannot_be_written_is_one_error(tmp_path):
    """(A file where the cache's directory should be: what fails even for root.)"""
    from fruixops.store.local import Item, StorePath
    src = tmp_path / "f"
    src.write_bytes(b"x")

    class Store:                     # what push reads of a store: one item's three objects
        archive = compressed = listing_file = staticmethod(lambda path: src)

        def transfer_info(self, path):
            return {"zstd": "1" * 64, "listing": "2" * 64, "zstd_size": 1}
    it = Item(StorePath.make("3" * 64, "x"), "4" * 64, 1, ())
    (tmp_path / "not-a-dir").write_text("")
    with pytest.raises(UserError, match="cannot write to the cache"):
        cache.push(Store(), [it], cache.DirTarget(tmp_path / "not-a-dir" / "cache"))
