"""numpy and PIL images (and sounds) reach the server byte-identical to what was stored."""

import io
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

import tidelog
from conftest import history


def test_images_from_numpy_pil_and_png_bytes_are_byte_identical_on_the_server(tmp_path, server):
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    gray = rng.random((4, 3))
    pil = PILImage.fromarray(rng.integers(0, 256, size=(6, 2, 4), dtype=np.uint8), "RGBA")
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG")
    png = buf.getvalue()
    (tmp_path / "pic.png").write_bytes(png)

    run = tidelog.init(project="media", dir=tmp_path, mode="offline")
    images = {
        "np_rgb": tidelog.Image(rgb, caption="noise"),
        "np_gray": tidelog.Image(gray),
        "pil": tidelog.Image(pil),
        "png": tidelog.Image(png),
        "path": tidelog.Image(tmp_path / "pic.png"),
    }
    tidelog.log(images)
    tidelog.log({"sound": tidelog.Audio(np.sin(np.linspace(0, 20, 800)), sample_rate=8000)})
    run.finish()
    tidelog.sync(dir=tmp_path, server=server.url, api_key=server.key)

    rows = history(server, run.id)
    for key, img in images.items():
        ref = rows[0][key]
        assert ref["_type"] == "image-file", ref
        served = server.get(f"/api/v1/runs/{run.id}/files/{ref['path']}")
        assert served == img.png() == (Path(run.dir) / "files" / ref["path"]).read_bytes()
        decoded = np.asarray(PILImage.open(io.BytesIO(served)).convert("RGBA"))
        assert decoded.shape[:2] == (ref["height"], ref["width"])
    assert rows[0]["np_rgb"]["caption"] == "noise"
    assert server.get(f"/api/v1/runs/{run.id}/files/{rows[0]['png']['path']}") == png, "PNG bytes are stored as given"
    pixels = lambda k: np.asarray(PILImage.open(io.BytesIO(server.get(f"/api/v1/runs/{run.id}/files/{rows[0][k]['path']}"))))
    assert np.array_equal(pixels("np_rgb")[:, :, :3], rgb) and (pixels("np_rgb")[:, :, 3] == 255).all()
    assert np.array_equal(pixels("pil"), np.asarray(pil))
    assert np.array_equal(pixels("np_gray")[:, :, 0], np.clip(gray * 255, 0, 255).round().astype(np.uint8))
    sound = rows[1]["sound"]
    wav = server.get(f"/api/v1/runs/{run.id}/files/{sound['path']}")
    assert wav[:4] == b"RIFF" and len(wav) == 44 + 2 * 800 and sound["sample_rate"] == 8000


def test_tables_from_pandas_and_histograms_from_numpy(tmp_path, server):
    import pandas as pd

    df = pd.DataFrame({"epoch": [0, 1, 2], "loss": [1.5, 0.75, 0.5], "tag": ["a", "b", "c"]})
    counts, edges = np.histogram(np.arange(10.0), bins=5)
    run = tidelog.init(project="media", dir=tmp_path, mode="offline")
    tidelog.log({"df": tidelog.Table(data=df), "h": tidelog.Histogram((counts, edges)),
                 "bars": tidelog.Plot.bar(tidelog.Table(dataframe=df), "tag", "loss")})
    run.finish()
    tidelog.sync(dir=tmp_path, server=server.url, api_key=server.key)
    row = history(server, run.id)[0]
    assert row["df"] == {"_type": "table", "columns": ["epoch", "loss", "tag"],
                         "data": [[0, 1.5, "a"], [1, 0.75, "b"], [2, 0.5, "c"]]}
    assert row["h"]["counts"] == counts.tolist() and row["h"]["bins"] == edges.tolist()
    assert row["bars"]["spec"]["encoding"]["x"] == {"field": "tag", "type": "nominal"}
