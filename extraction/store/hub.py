"""Where a store's files are: a local folder, or a dataset repository on the Hugging Face Hub.

``hf://datasets/OWNER/NAME`` (``@REVISION`` optional, the ``HfFileSystem`` spelling) is
downloaded once with ``huggingface_hub.snapshot_download`` into the Hub cache and then read
like any local store: the reader only ever sees a folder. Offline (``HF_HUB_OFFLINE=1``, or no
network) a cached snapshot still opens; an uncached one is a one-line error.
"""

from __future__ import annotations

import re
from pathlib import Path

from common import UserError

HUB_PREFIX = "hf://datasets/"
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


def store_folder(location: str | Path) -> Path:
    """The local folder of a store: ``location`` itself, or the Hub snapshot it names."""
    text = str(location)
    if not text.startswith(HUB_PREFIX):
        return Path(location)
    repo_id, _, revision = text.removeprefix(HUB_PREFIX).partition("@")
    if not _REPO_ID.fullmatch(repo_id):
        raise UserError(f"{text}: a Hub store is hf://datasets/OWNER/NAME[@REVISION]")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", revision=revision or None))
    except LocalEntryNotFoundError:
        raise UserError(
            f"{text}: not in the Hub cache and the Hub cannot be reached (offline: "
            "HF_HUB_OFFLINE=1, or no network); download it once online, or pass a local store"
        ) from None
    except HfHubHTTPError as exc:
        raise UserError(f"{text}: the Hub refused it ({type(exc).__name__}: {exc})") from None
