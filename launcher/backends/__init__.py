"""Registry of backends: provider name -> 'module:Class', imported only when used."""

from __future__ import annotations

import importlib

from launcher.errors import UsageError

REGISTRY: dict[str, str] = {
    "local": "launcher.backends.local:LocalBackend",
    "runpod": "launcher.backends.skypilot:SkyPilotBackend",
    "vast": "launcher.backends.skypilot:SkyPilotBackend",
    "skypilot": "launcher.backends.skypilot:SkyPilotBackend",
    "jarvislabs": "launcher.backends.jarvislabs:JarvislabsBackend",
    "colab": "launcher.backends.notebook:ColabBackend",
    "kaggle": "launcher.backends.notebook:KaggleBackend",
    "sagemaker": "launcher.backends.sagemaker:SageMakerBackend",
    "azureml": "launcher.backends.azureml:AzureMLBackend",
    "vertex": "launcher.backends.vertex:VertexBackend",
}


def provider_names() -> list[str]:
    return list(REGISTRY)


def get_backend(provider: str):
    target = REGISTRY.get(provider)
    if target is None:
        raise UsageError(f"unknown provider '{provider}'",
                         hint=f"choose one of: {', '.join(REGISTRY)}")
    mod, cls = target.split(":")
    try:
        module = importlib.import_module(mod)
    except ModuleNotFoundError as e:
        raise UsageError(f"the {provider} backend is not available ({e.name} missing)",
                         hint=f"pip install 'launcher[{provider}]'") from None
    return getattr(module, cls)(provider)
