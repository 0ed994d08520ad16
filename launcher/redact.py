"""Secret redaction for everything the launcher prints or writes for people (logs, dry runs).

Secrets travel only by each provider's secret mechanism or the environment at submit time; this
is the net under that rule: any known secret's value, and anything shaped like a token, is
replaced by `***` before it reaches a terminal or a log file.

    redact("token hf_abc... used")  ->  "token *** used"
"""

from __future__ import annotations

import json
import os
import re
from typing import Mapping, Optional

# Environment variables whose values are secrets (provider keys, hub and tracker tokens).
SECRET_ENV = (
    "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "RUNPOD_API_KEY", "VAST_API_KEY",
    "JL_API_KEY", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "GOOGLE_API_KEY",
    "LAMBDA_API_KEY", "OPENAI_API_KEY",
)
# Files whose content is secret: the values inside (a service-account JSON's private key).
SECRET_FILE_ENV = ("GOOGLE_APPLICATION_CREDENTIALS",)
MASK = "***"
MIN_LEN = 6  # shorter values would mask ordinary words; no real key is that short

# Token shapes worth masking even when no variable names them.
_PATTERNS = re.compile(
    r"\bhf_[A-Za-z0-9]{20,}\b"                                   # Hugging Face tokens
    r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"                            # AWS access key ids
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}\b"                          # GitHub tokens
    r"|\b(?:rpa|rp)_[A-Za-z0-9]{30,}\b"                          # Runpod API keys
    r"|(?<=[?&])(?:sig|X-Amz-Signature|X-Goog-Signature|token)=[^&\s\"']+",  # signed URLs
    re.DOTALL,
)

_cache: dict[tuple, list[str]] = {}


def secret_values(env: Optional[Mapping[str, str]] = None) -> list[str]:
    """The values to mask: known secret variables, and the secret fields of credential files."""
    env = os.environ if env is None else env
    key = tuple((k, env.get(k)) for k in SECRET_ENV + SECRET_FILE_ENV)
    if key in _cache:
        return _cache[key]
    vals = {env[k] for k in SECRET_ENV if env.get(k) and len(env[k]) >= MIN_LEN}
    for k in SECRET_FILE_ENV:
        vals.update(_file_secrets(env.get(k)))
    out = sorted(vals, key=len, reverse=True)  # longest first: a value containing another
    _cache[key] = out
    return out


def _file_secrets(path: Optional[str]) -> set[str]:
    if not path:
        return set()
    try:
        data = json.loads(open(path, encoding="utf-8").read(200_000))
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict):
        return set()
    return {str(data[k]) for k in ("private_key", "private_key_id", "client_secret", "refresh_token")
            if data.get(k) and len(str(data[k])) >= MIN_LEN}


def redact(text: str, env: Optional[Mapping[str, str]] = None) -> str:
    """`text` with every secret value and token-shaped string replaced by ***."""
    if not text:
        return text
    for v in secret_values(env):
        if v in text:
            text = text.replace(v, MASK)
    return _PATTERNS.sub(MASK, text)


def redact_obj(obj, env: Optional[Mapping[str, str]] = None):
    """The same over a JSON-like structure (dict keys are left alone)."""
    if isinstance(obj, str):
        return redact(obj, env)
    if isinstance(obj, dict):
        return {k: redact_obj(v, env) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v, env) for v in obj]
    return obj


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """An environment for display: secret variables' values masked."""
    return {k: (MASK if k in SECRET_ENV and v else redact(v)) for k, v in env.items()}
