"""Keep database passwords out of everything a search leaves behind.

A storage URL may carry a password (``postgresql+psycopg://ann:s3cret@db/search``).
Reprs, logs and errors redact it (:func:`redact_url`; :func:`scrub` also where a
driver echoed the bare password), and this module covers what outlives the process:

* **Pickles** of a search hold the redacted URL (``ann:***@db``) and an in-memory
  copy of the study, never the password nor a database connection.
* **Clones** (``sklearn.clone``, so every ``cross_validate`` fold) hold the
  redacted URL too; this process remembers the password for it, so a clone fits
  as its original would, while a pickle read in another process cannot.
* A redacted URL that reaches ``fit`` where the password is unknown fails
  before any training, asking for the URL again.
* A URL may reference environment variables instead, ``${PGPASSWORD}``,
  expanded only when the storage is opened: such a search carries no secret
  anywhere, which is the form for job scripts and long searches.
"""

from __future__ import annotations

import os
import re

import optuna

from ._optuna_compat import storage_of

__all__ = ["expand_storage_url", "forget_password", "has_literal_password", "pickle_safe_storage", "redact_url",
           "scrub", "REDACTED"]

REDACTED = "***"
# Redacted URL -> the full URL, for clones made in this process (never pickled).
_KNOWN: dict[str, str] = {}
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_USERINFO_PASSWORD = re.compile(r"://[^:/@\s]*:([^\s/]*)@")


def _password(url: str) -> str | None:
    match = _USERINFO_PASSWORD.search(url)
    if match:
        return match.group(1)
    match = re.search(r"(?i)\b(?:password|passwd|pwd)\s*=\s*([^&\s;'\"]+)", url)
    return match.group(1) if match else None


def redact_url(url) -> str:
    """Hide the password of a database URL (or of any text holding one).

    Used for every log line, repr and error message that could show a
    storage URL: the user-info password and ``password=`` options become
    ``***``. A text that is one database URL is rendered by SQLAlchemy
    (``URL.render_as_string(hide_password=True)``); any other text (an error
    message quoting a URL, a connection string) is searched for passwords.

    Parameters
    ----------
    url : object
        A URL, an error message or any object (its ``str``).

    Returns
    -------
    text : str
        The text with passwords replaced by ``***``.

    Examples
    --------
    >>> redact_url("postgresql+psycopg://ann:s3cr@t@db.example:5432/search")
    'postgresql+psycopg://ann:***@db.example:5432/search'
    >>> redact_url("postgresql://db/search?user=ann&password=s3cret")
    'postgresql://db/search?user=ann&password=***'
    """
    text = str(url)
    parsed = _whole_url(text)
    if parsed is not None:
        # SQLAlchemy's own rendering hides the user-info password; the query keeps its order.
        base, query = parsed.set(query={}).render_as_string(hide_password=True), text.partition("?")[2]
        return base + (f"?{_redact_options(query)}" if "?" in text else "")
    # Any other text (an error message, a log line): the user-info ends at the last "@" before
    # the host, as passwords may hold "@" unencoded.
    text = re.sub(r"(://[^:/@\s]*):[^\s/]*@", r"\1:***@", text)
    return _redact_options(text)


def _redact_options(text: str) -> str:
    """``password=`` (``passwd``, ``pwd``) options of a URL query or connection string as ``***``."""
    return re.sub(r"(?i)\b((?:password|passwd|pwd)\s*=\s*)[^&\s;'\"]+", r"\1***", text)


def _whole_url(text: str):
    """``text`` as a SQLAlchemy URL when it is one URL that SQLAlchemy reads as written, else None.

    A password holding a raw "@" is not: SQLAlchemy cuts the user-info at the first "@".
    """
    if not re.fullmatch(r"[\w+]+://\S*", text) or text.split("://", 1)[1].split("/", 1)[0].count("@") > 1:
        return None
    try:
        # sqlalchemy is Optuna's optional database dependency: file and memory storages never load it.
        from sqlalchemy.engine import make_url

        return make_url(text)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: handled as text
        return None


def scrub(message: str, url: str) -> str:
    """An error message without the URL's password, even where a driver echoed it bare.

    Examples
    --------
    >>> scrub("auth failed for s3cret", "postgresql://ann:s3cret@db/search")
    'auth failed for ***'
    """
    try:
        # sqlalchemy is Optuna's optional database dependency: file and memory storages never load it.
        from sqlalchemy.engine import make_url

        password = make_url(url).password
    except Exception:  # noqa: BLE001 - unparsable URL: nothing more to hide than redact_url finds
        password = None
    if password:
        message = message.replace(str(password), REDACTED)
    return redact_url(message)


def has_literal_password(url) -> bool:
    """Whether a URL carries a password itself (redacted or not), not as a ``${VAR}`` reference.

    Such a URL must not travel to other machines (task payloads of a cluster
    engine): the workers would receive the password, or a redacted one they
    cannot use.

    Examples
    --------
    >>> has_literal_password("postgresql://ann:s3cret@db/search")
    True
    >>> has_literal_password("postgresql://ann:${PGPASSWORD}@db/search"), has_literal_password("postgresql://db/s")
    (False, False)
    """
    password = _password(str(url))
    return bool(password) and not _ENV_REFERENCE.fullmatch(password)


def forget_password(url):
    """The URL as a search may keep it: redacted, with the password remembered here.

    URLs without a literal password (files, ``${VAR}`` references) come back unchanged.

    Examples
    --------
    >>> forget_password("postgresql://ann:s3cret@db/search")
    'postgresql://ann:***@db/search'
    >>> forget_password("postgresql://ann:${PGPASSWORD}@db/search")
    'postgresql://ann:${PGPASSWORD}@db/search'
    """
    if not isinstance(url, str) or "://" not in url:
        return url
    password = _password(url)
    if password is None or password == REDACTED or _ENV_REFERENCE.fullmatch(password):
        return url
    redacted = redact_url(url)
    _KNOWN[redacted] = url
    return redacted


def expand_storage_url(url: str) -> str:
    """The URL to connect with: ``${VAR}`` expanded, a redacted password restored or refused."""
    def env(match):
        name = match.group(1)
        if name not in os.environ:
            raise ValueError(
                f"`storage={redact_url(url)!r}` references ${{{name}}}, which is not set in this "
                f"environment; export {name} (e.g. in the job script) before running the search."
            )
        return os.environ[name]

    if _password(url) == REDACTED:
        if url not in _KNOWN:
            raise ValueError(
                f"`storage={url!r}` has its password redacted: a pickled or cloned search never keeps "
                "it. To resume, give the URL again, e.g. search.set_params(storage='postgresql+psycopg://"
                "user:password@host/db'), or keep the password out of the search for good with an "
                "environment variable reference: storage='postgresql+psycopg://user:${PGPASSWORD}@host/db'."
            )
        url = _KNOWN[url]
    return _ENV_REFERENCE.sub(env, url)


def pickle_safe_storage(storage):
    """What a pickled search keeps of ``storage``: no password, no connection."""
    backend = storage_of(storage, unwrap=True)
    if isinstance(backend, optuna.storages.RDBStorage):
        return forget_password(str(backend.url))
    return forget_password(storage) if isinstance(storage, str) else storage
