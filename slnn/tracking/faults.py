"""What went wrong with a tracking store, in one line that names the real cause, and URIs with
their credentials masked.

    mask("http://ann:s3cret@host:5000")       # 'http://ann:***@host:5000'
    describe(uri, exc)                         # 'the tracking store ... is read-only (...): ...'

Every message slnn prints about a store goes through ``mask``. The causes ``describe`` recognises
are listed in docs/faults.md ("One line per store fault")."""

from __future__ import annotations

import errno
import os
import re
from urllib.parse import unquote, urlsplit


class TrackingError(RuntimeError):
    """MLflow could not be reached or used; the message (one line) says what was tried, why it
failed and what to do."""


# where a URI starts in free text (``scheme://``) and ends: at whitespace or a character a URI
# never holds unencoded (RFC 3986), so a password with ' ( ) ; ... in it is still one URI
# (``\:`` too: Hydra escapes a colon when it writes an override back, ``tracking.uri=http\://...``)
_URI_START = re.compile(r"(?<![\w+.-])[A-Za-z][\w+.-]*\\?://")
_URI_END = re.compile(r"[\s\"`<>{}|^]")
_TRAILING = ")'.,;:]"  # sentence punctuation or quotes right after a URI, not part of it
# query or fragment keys whose values are secrets (lower case; also any key that ends in one of
# the suffixes: ``access_token``, ``db_password``, ...)
_SECRET_SUFFIXES = ("token", "password", "passwd", "secret")
_SECRET_KEYS = {"pwd", "pass", "key", "apikey", "api_key", "sig", "signature", "auth",
                "authorization", "credential", "credentials", "x-amz-signature",
                "x-amz-credential", "sas", "code"}
MASK = "***"


def _secret_key(key: str) -> bool:
    k = unquote(key).strip().lower()
    return k in _SECRET_KEYS or k.endswith(_SECRET_SUFFIXES)


def _mask_pairs(text: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=***``: the value of every secret key, the rest verbatim."""
    out = []
    for part in re.split(r"([&;])", text):
        key, eq, _ = part.partition("=")
        out.append(f"{key}={MASK}" if eq and _secret_key(key) else part)
    return "".join(out)


def _mask_uri(uri: str) -> str:
    """One URI with its secrets replaced by ``***``, split by ``urllib.parse.urlsplit``: the
    password of its userinfo (``user:***@``), a userinfo without a password as a whole (it is
    then a token, as in ``https://<token>@host``), and the values of secret query and fragment
    keys (``?token=***``); everything else as it was written. A URI whose host part cannot be
    told from its userinfo (an ``@`` after the host part: a password with an unencoded ``/``,
    ``?`` or ``#``; a port that is not a number; a broken IPv6 address) is masked whole after
    its scheme: a message may lose detail, never keep a secret."""
    head, sep, body = uri.partition("://")
    whole = f"{head}{sep}{MASK}"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - a ValueError for a port that is not a number
    except ValueError:
        return whole
    netloc = parts.netloc
    if not body.startswith(netloc):
        return whole
    rest = body[len(netloc):]
    userinfo, at, hostport = netloc.rpartition("@")
    if "@" in rest:
        return whole
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = (f"{user}:{MASK}" if colon else MASK) + "@" + hostport
    path, h, fragment = rest.partition("#")
    path, q, query = path.partition("?")
    return (f"{head}{sep}{netloc}{path}{q}{_mask_pairs(query) if q else ''}"
            f"{h}{_mask_pairs(fragment) if h else ''}")


def mask(text: str) -> str:
    """``text`` with the secrets of every URI in it replaced by ``***`` (``_mask_uri``):
    ``http://ann:p@ss@host`` -> ``http://ann:***@host``, ``https://tok@host`` ->
    ``https://***@host``, ``...?token=x`` -> ``...?token=***``. Percent-encoded characters
    (``p%40ss``) are part of the password and go with it."""
    text = str(text)
    out, pos = [], 0
    for m in _URI_START.finditer(text):
        if m.start() < pos:  # inside the URI just masked
            continue
        end = _URI_END.search(text, m.end())
        stop = end.start() if end else len(text)
        uri = text[m.start():stop]
        body = uri.rstrip(_TRAILING)
        if "@" in uri[len(body):]:  # what looked like punctuation is inside the userinfo
            body = uri
        # a backslash escapes the next character (Hydra's overrides): the URI is without them
        plain = re.sub(r"\\(.)", r"\1", body)
        out += [text[pos:m.start()], _mask_uri(plain) if "\\" in body and mask_needed(plain)
                else _mask_uri(body), uri[len(body):]]
        pos = stop
    out.append(text[pos:])
    return "".join(out)


def mask_needed(uri: str) -> bool:
    """Whether ``uri`` holds a secret ``mask`` hides."""
    return _mask_uri(uri) != uri


def strip_credentials(uri: str) -> str:
    """``uri`` without its userinfo, and with secret query values masked: an address to open in
    a browser, which asks for the credentials itself (``http://ann:pw@host/x`` ->
    ``http://host/x``)."""
    masked = mask(uri)
    head, sep, body = masked.partition("://")
    host, slash, rest = body.partition("/")
    if sep and "@" in host:
        host = host.rpartition("@")[2]
    return f"{head}{sep}{host}{slash}{rest}"


def mask_files(paths) -> None:
    """Rewrite, masked, each of ``paths`` (text files) that holds a URI secret: the files other
    tools write with a command line in them (Hydra's ``.hydra/overrides.yaml``, ``config.yaml``,
    ``hydra.yaml``). A file that cannot be read or written is left as it is."""
    from pathlib import Path

    for path in paths:
        try:
            text = Path(path).read_text()
            masked = mask(text)
            if masked != text:
                tmp = Path(f"{path}.masking")
                tmp.write_text(masked)
                os.replace(tmp, path)
        except (OSError, UnicodeDecodeError):
            continue


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out and len(out) < 10:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]


def _errnos(chain: list[BaseException]) -> set[int]:
    return {e.errno for e in chain if isinstance(e, OSError) and e.errno}


# (test, cause, what to do); the first that matches names the cause
def _causes(uri: str):
    sqlite = uri.startswith("sqlite:")
    where = "the file and its folder" if sqlite else "the store"
    return [
        (lambda t, n, c: any(isinstance(e, ModuleNotFoundError) for e in c),
         lambda c: f"needs a database driver that is not installed ({_missing_module(c)})",
         lambda c: _driver_hint(uri, _missing_module(c))),
        (lambda t, n, c: "readonly database" in t or "read-only" in t or errno.EROFS in n
         or errno.EACCES in n or errno.EPERM in n or "permission denied" in t
         or "unable to open database file" in t,
         lambda c: "is read-only or cannot be opened for writing",
         lambda c: f"make {where} writable by this user, or point tracking.uri / "
                   "MLFLOW_TRACKING_URI at a store you can write"),
        (lambda t, n, c: "disk is full" in t or "no space left" in t or errno.ENOSPC in n
         or errno.EDQUOT in n or "file too large" in t or errno.EFBIG in n
         or ("disk i/o error" in t and _nearly_full(uri)),
         lambda c: "is on a full disk",
         lambda c: "free some space (runs already recorded are kept) and run the same command again"),
        (lambda t, n, c: "file is not a database" in t or "malformed" in t
         or "not a database" in t,
         lambda c: "is corrupt (not a readable SQLite database)",
         lambda c: "restore it from a backup, or move it aside to start a new store"),
        (lambda t, n, c: "out-of-date database schema" in t,
         lambda c: "was made by an older MLflow",
         lambda c: f"back it up, then run: mlflow db upgrade {mask(uri)}"),
        (lambda t, n, c: "database is locked" in t,
         lambda c: "stayed locked by another process",
         lambda c: "wait for the other process (or stop it) and run the same command again"),
        (lambda t, n, c: re.search(r"\b(401|403)\b", t) is not None or "unauthorized" in t
         or "permission_denied" in t,
         lambda c: "refused the credentials",
         lambda c: "check the user and password in the URI (or MLFLOW_TRACKING_USERNAME / "
                   "MLFLOW_TRACKING_PASSWORD)"),
        # a server's answer: never a SQLite file's (a number in its error is no HTTP status)
        (lambda t, n, c: not sqlite and (re.search(r"\b50[0-4]\b", t) is not None
                                         or "too many 50" in t),
         lambda c: "answers with server errors",
         lambda c: "look at the server's log (its database may be down) or use another store"),
        (lambda t, n, c: "connection refused" in t or "max retries exceeded" in t
         or "timed out" in t or "timeout" in t or "name or service not known" in t
         or errno.ECONNREFUSED in n,
         lambda c: "does not answer",
         lambda c: "start it (mlflow server --host 127.0.0.1 --port 5000 ...) or point "
                   "MLFLOW_TRACKING_URI at a running one"),
    ]


def _nearly_full(uri: str) -> bool:
    """SQLite says "disk I/O error" when it cannot even create its journal: is the disk full?"""
    if not uri.startswith("sqlite:///"):
        return False
    try:
        st = os.statvfs(os.path.dirname(uri[len("sqlite:///"):]) or ".")
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def quiet_store_errors() -> None:
    """MLflow logs every SQL error, with its traceback, before raising it (tens of lines); slnn
    says what went wrong in one line of its own."""
    import logging

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def _missing_module(chain) -> str:
    for e in chain:
        if isinstance(e, ModuleNotFoundError):
            return e.name or _first_line(e)
    return "?"


def _driver_hint(uri: str, module: str) -> str:
    if uri.startswith("postgresql") and module in ("psycopg", "psycopg2"):
        if module == "psycopg":
            return ("a bare postgresql:// means psycopg 3: write postgresql+psycopg2://... and "
                    "pip install -e '.[team]', or pip install 'psycopg[binary]'")
        return "pip install -e '.[team]' (psycopg2)"
    return f"pip install the package that provides {module}"


def classify(uri: str, exc: BaseException) -> tuple[str, str] | None:
    """``(cause, fix)`` for a store fault slnn recognises, else None."""
    chain = _chain(exc)
    text = " | ".join(f"{type(e).__name__}: {e}" for e in chain).lower()
    numbers = _errnos(chain)
    for test, cause, fix in _causes(uri):
        if test(text, numbers, chain):
            return cause(chain), fix(chain)
    return None


def describe(uri: str, exc: BaseException, doing: str = "") -> str:
    """One line: which store, what is wrong with it (the real cause) and what to do."""
    found = classify(uri, exc)
    at = f" while {doing}" if doing else ""
    if found is None:
        return mask(f"the tracking store {uri} failed{at}: {_first_line(exc)}; check it, or set "
                    "tracking.uri / MLFLOW_TRACKING_URI to another store, e.g. sqlite:///mlflow.db")
    cause, fix = found
    return mask(f"the tracking store {uri} {cause}{at} ({_first_line(exc)}): {fix}")


def is_outage(uri: str, exc: BaseException) -> bool:
    """A fault that may pass by itself: a server that does not answer or answers errors, or a
    store locked by someone else. A run caught by one can be tried again once it is over."""
    found = classify(uri, exc)
    return found is not None and found[0] in ("does not answer", "answers with server errors",
                                             "stayed locked by another process")
