"""``hf:`` under a cassette: what the local model generated is recorded, and a replay needs
neither the model files nor torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from llmkit import Client
from llmkit.testing import cassette

REPLAY = textwrap.dedent(
    """
    import json, sys
    from llmkit import Client
    from llmkit.testing import cassette

    spec, path = sys.argv[1], sys.argv[2]
    with cassette(path, record="none"), Client(spec, max_tokens=8) as client:
        out = [client.chat("Hello").text]
        with client.stream("Once upon a time") as s:
            out.append([e.text for e in s])
        out.append(client.complete("The capital of France").text)
    print(json.dumps({"out": out, "torch": "torch" in sys.modules}))
    """
)


def test_hf_replay_loads_no_model(tiny_llama_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_llama_dir, model_dir)
    spec = f"hf:{model_dir}"
    path = tmp_path / "hf.json"
    with cassette(path), Client(spec, max_tokens=8, device="cpu") as client:
        recorded = [client.chat("Hello").text]
        with client.stream("Once upon a time") as s:
            recorded.append([e.text for e in s])
        recorded.append(client.complete("The capital of France").text)
    assert recorded[0] and "".join(recorded[1])
    shutil.rmtree(model_dir)  # the replay cannot load it even if it tried

    result = subprocess.run(
        [sys.executable, "-c", REPLAY, spec, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    replay = json.loads(result.stdout.strip().splitlines()[-1])
    assert replay["out"] == recorded
    assert replay["torch"] is False
    data = json.loads(path.read_text())
    assert [i["request"]["call"] for i in data["interactions"]] == [
        "chat",
        "stream",
        "complete",
    ]
    assert data["backends"][spec]["capabilities"]["completion"] is True
