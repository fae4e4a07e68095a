"""`make remote`: the project's default DVC remote, on storage every machine of the team reaches.

- On the team server's host, with no URL: the server's DVC store (`<state>/dvc`), shared as the URL
  `make server` gives teammates (`ssh://<server address>/<state>/dvc`) and reached here as the folder
  itself (in `.dvc/config.local`); for a server on loopback, the folder.
- On a teammate's machine: `--url ssh://[user@]host[:port]/path` (DVC's SSH remote, the dvc-ssh
  plugin) with the teammate's own key (`--keyfile`, else ssh-agent and ~/.ssh as OpenSSH finds them),
  or the team's bucket, `s3://…` (credentials from the AWS environment or profile; `--endpoint` for an
  S3-compatible store) or `gs://…` (Google's application default credentials).

The URL, without a user name, goes to `.dvc/config` (commit it: the team shares it); what is the
teammate's own — user, port, key file, endpoint — goes to `.dvc/config.local`, which DVC keeps out of
git. No password or secret key is ever written by this command.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from urllib.parse import urlsplit

from imgclf.errors import UserError
from imgclf.team import REMOTE, server

# scheme -> (DVC's plugin module, how to install it)
PLUGINS = {"ssh": ("dvc_ssh", "pip install 'imgclf[team]'"), "s3": ("dvc_s3", "pip install 'imgclf[team]'"),
           "gs": ("dvc_gs", "pip install dvc-gs")}


def configure(root: Path, state: Path, name: str = REMOTE, url: str | None = None, endpoint: str | None = None,
              keyfile: str | None = None) -> str:
    """Add (or replace) remote `name` as the default; return a line saying what was set where."""
    from dvc.config import Config

    here = None  # on the server's host: its DVC store, reached as a folder rather than over SSH to itself
    if url is None:
        info = _server_info(state)
        if info is None:
            raise UserError(f"remote: no --url (URL=) and no team server state in {state}: on a teammate's machine "
                            f"pass the URL `make server` printed (ssh://<server>/<path>), or your bucket "
                            f"(s3://<bucket>/<path>, gs://<bucket>/<path>)")
        url = info["dvc_remote"]
        here = info.get("dvc_store") if url.startswith("ssh://") else None
    parts = urlsplit(url)
    scheme = parts.scheme if "://" in url else "local"
    if scheme not in (*PLUGINS, "local"):
        raise UserError(f"remote: {url}: must be ssh://[user@]host[:port]/path, s3://<bucket>/<path>, "
                        f"gs://<bucket>/<path> or a folder")
    if scheme in PLUGINS and importlib.util.find_spec(PLUGINS[scheme][0]) is None:
        module, install = PLUGINS[scheme]
        raise UserError(f"remote: {scheme}:// needs DVC's {module.replace('_', '-')} plugin: {install}")
    if scheme == "local":
        url = str(Path(url).resolve())
    local: dict[str, str] = {}
    if scheme == "ssh":
        if parts.username:
            local["user"] = parts.username
        if parts.port:
            local["port"] = str(parts.port)
        url = f"ssh://{parts.hostname}{parts.path}"
        if keyfile:
            local["keyfile"] = str(Path(keyfile).expanduser().resolve())
    elif keyfile:
        raise UserError("remote: --keyfile (KEYFILE=) is for an ssh:// remote")
    if here:
        local["url"] = here
    if endpoint:
        if scheme != "s3":
            raise UserError("remote: --endpoint is for an s3:// remote (an S3-compatible store)")
        local["endpointurl"] = endpoint
    config = Config(dvc_dir=root / ".dvc")
    with config.edit("repo") as conf:
        conf["remote"][name] = {"url": url}
        conf["core"]["remote"] = name
    with config.edit("local") as conf:
        if local:
            conf["remote"][name] = local
        else:
            conf["remote"].pop(name, None)
    own = (", ".join(f"{key} {value}" for key, value in local.items()) + " in .dvc/config.local (not in git)"
           if local else "nothing of yours in any file")
    how = {"ssh": "your SSH key or agent" if not here else "the folder itself on this host (teammates: SSH)",
           "s3": "credentials from your AWS environment/profile",
           "gs": "Google's application default credentials", "local": "this machine's folder"}[scheme]
    return f"remote: {name} = {url} (default) in .dvc/config; {own}; access through {how}"


def _server_info(state: Path) -> dict | None:
    try:
        info = json.loads(server.Settings(state=state).info_file.read_text())
    except (OSError, ValueError):
        return None
    return info if "dvc_remote" in info else None
