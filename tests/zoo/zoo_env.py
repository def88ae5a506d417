"""A zoo in a temporary directory: its own cards folder and cache (FCN_KERAS_HOME)."""

from __future__ import annotations

from pathlib import Path

import fcn_keras.zoo.cards
from fcn_keras.resources import zoo_path


class TmpZoo:
    """Cards written here replace the shipped ones; the cache lives in ``home``."""

    def __init__(self, root: Path, monkeypatch):
        self.cards = root / "zoo" / "cards"
        self.cards.mkdir(parents=True)
        self.home = root / "home"
        monkeypatch.setenv("FCN_KERAS_HOME", str(self.home))
        monkeypatch.setattr(fcn_keras.zoo.cards, "zoo_path", lambda *parts: root.joinpath("zoo", *parts))

    def add_card(self, like: str, url: str | None = None, checksum: str | None = None) -> str:
        """Copies the shipped card ``like``, optionally with another URL and checksum."""
        text = zoo_path("cards", f"{like}.toml").read_text()
        file = text.split('file = "')[1].split('"')[0]
        if url is not None:
            old_urls = text.split("urls = ")[1].split("\n")[0]
            text = text.replace(f"urls = {old_urls}", f'urls = ["{url}"]')
        if checksum is not None:
            old = text.split("checksum = ")[1].split("\n")[0]
            text = text.replace(f"checksum = {old}", f'checksum = "{checksum}"')
        (self.cards / f"{like}.toml").write_text(text)
        return file

    @property
    def downloads(self) -> Path:
        return self.home / "downloads"
