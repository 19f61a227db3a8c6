"""`dfjax data prepare NAME --manual-dir DIR` on the real sets: prepares or explains."""

import pytest

from dfjax.cli import main


@pytest.mark.parametrize("name, page", [
    ("real_vs_fake_140k", "xhlulu/140k-real-and-fake-faces"),
    ("dfdc", "deepfake-detection-challenge"),
    ("covid19_xray", "pranavraikokte/covid19-image-dataset"),
])
def test_missing_download_tells_what_to_get(name, page, tmp_path, capsys):
    rc = main(["data", "prepare", name, "--manual-dir", str(tmp_path / "nowhere"),
               "--data-dir", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert rc == 2 and page in err and "has this layout" in err
    assert f"dfjax data prepare {name} --manual-dir DIR" in err


def test_prepare_from_the_download(kaggle_140k, tmp_path, capsys):
    rc = main(["data", "prepare", "real_vs_fake_140k", "--manual-dir", str(kaggle_140k),
               "--data-dir", str(tmp_path / "d"), "--image-size", "16"])
    out = capsys.readouterr().out
    assert rc == 0 and "train: 6 examples, 3 fake" in out
