"""Shared by the examples: pick a config profile from --profile or LLMKIT_PROFILE."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from llmkit import AsyncClient, Client

CONFIG = Path(__file__).with_name("llmkit.toml")


def parse_args(description: str, default_profile: str = "local") -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--profile",
        default=os.environ.get("LLMKIT_PROFILE", default_profile),
        help=f"a profile of {CONFIG.name} (default: %(default)s)",
    )
    return parser.parse_args()


def client_for(profile: str) -> Client:
    return Client.from_config(CONFIG, profile=profile)


def async_client_for(profile: str) -> AsyncClient:
    return AsyncClient.from_config(CONFIG, profile=profile)
