"""Taxonomies: event type -> stage, conversion events, and per-dataset setting presets.

Internally every event plays one of five canonical *roles* in funnel order
(``ROLES``: awareness < consideration < decision < retention < advocacy) and customers can be
``lapsed``. A taxonomy names its stages and says which role each stage plays, so the label rules
of SPEC section 4 work for any naming (``see_think_do_care``, ``aida``, custom TOML files).
Two roles may share one stage name (e.g. ``care`` = retention + advocacy).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from journey_stage.core.errors import ConfigError

ROLES = ("awareness", "consideration", "decision", "retention", "advocacy")
LAPSED = "lapsed"
ROLE_INDEX = {r: i for i, r in enumerate(ROLES)}
LAPSED_INDEX = len(ROLES)  # 5


@dataclass(frozen=True)
class Taxonomy:
    name: str
    event_role: dict[str, str]  # event_type -> role
    role_stage: dict[str, str]  # role -> stage name shown to users
    conversion_events: frozenset[str]
    settings: dict[str, Any] = field(default_factory=dict)  # preset settings ([settings] table)
    description: str = ""

    @property
    def event_types(self) -> list[str]:
        return sorted(self.event_role)

    @property
    def stages(self) -> list[str]:
        """Stage names in funnel order, then ``lapsed`` (the classes of the stage model)."""
        out: list[str] = []
        for role in ROLES:
            s = self.role_stage[role]
            if s not in out:
                out.append(s)
        return out + [LAPSED]

    @property
    def advocacy_events(self) -> list[str]:
        return sorted(e for e, r in self.event_role.items() if r == "advocacy")

    def stage_of_role_index(self, idx: int) -> str:
        return LAPSED if idx == LAPSED_INDEX else self.role_stage[ROLES[idx]]

    def role_of_stage(self, stage: str) -> str:
        for role in ROLES:
            if self.role_stage[role] == stage:
                return role
        raise ConfigError(f"stage {stage!r} is not in taxonomy '{self.name}'.", f"use one of {self.stages[:-1]}.")

    def with_unknown(self, unknown_types: list[str], stage: str) -> "Taxonomy":
        """A copy that maps ``unknown_types`` to ``stage`` (the ``--unknown-stage`` flag)."""
        role = self.role_of_stage(stage)
        mapping = dict(self.event_role)
        mapping.update({e: role for e in unknown_types})
        return Taxonomy(self.name, mapping, self.role_stage, self.conversion_events, self.settings, self.description)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "conversion_events": sorted(self.conversion_events),
            "stages": [
                {"name": self.role_stage[r], "role": r, "events": sorted(e for e, rr in self.event_role.items() if rr == r)}
                for r in ROLES
            ],
            "settings": self.settings,
        }


def preset_names() -> list[str]:
    files = resources.files("journey_stage.core.taxonomies")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def taxonomy_from_dict(data: dict[str, Any], source: str) -> Taxonomy:
    def bad(msg: str) -> ConfigError:
        return ConfigError(f"{source}: {msg}", "see core/taxonomies/five_stage.toml for the format.")

    name = data.get("name") or Path(source).stem
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        raise bad("expected a non-empty [[stages]] array of tables.")
    event_role: dict[str, str] = {}
    role_stage: dict[str, str] = {}
    for i, st in enumerate(stages):
        if not isinstance(st, dict) or "name" not in st:
            raise bad(f"stages[{i}]: expected a table with 'name', 'events' and optionally 'role'.")
        sname = str(st["name"])
        role = st.get("role", sname)
        if role not in ROLES:
            raise bad(f"stages[{i}] ({sname!r}): role {role!r} is not one of {list(ROLES)}; set role = \"...\".")
        if role in role_stage:
            raise bad(f"stages[{i}] ({sname!r}): role {role!r} is given twice.")
        role_stage[role] = sname
        for ev in st.get("events", []):
            if ev in event_role:
                raise bad(f"stages[{i}] ({sname!r}): event type {ev!r} is mapped twice.")
            event_role[str(ev)] = role
    # roles a taxonomy does not name (e.g. purchase-only data) fall back to the canonical name
    # of the role, so labels can still be stated; such a stage simply never appears in events.
    for role in ROLES:
        role_stage.setdefault(role, role)
    order = [ROLE_INDEX[st.get("role", st["name"])] for st in stages]  # as listed in the file
    if order != sorted(order):
        raise bad("stages must be listed in funnel order awareness < consideration < decision < retention < advocacy.")
    conv = data.get("conversion_events", ["purchase"])
    unknown_conv = [c for c in conv if c not in event_role]
    if unknown_conv:
        raise bad(f"conversion_events {unknown_conv} are not mapped to any stage.")
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise bad("[settings] must be a table.")
    return Taxonomy(str(name), event_role, role_stage, frozenset(conv), settings, str(data.get("description", "")))


def load_taxonomy(name_or_path: str | Path = "five_stage") -> Taxonomy:
    """A preset by name (``five_stage``, ``see_think_do_care``, ``aida``, dataset presets) or a TOML file."""
    text = str(name_or_path)
    if text.endswith(".toml") or Path(text).exists():
        p = Path(text)
        if not p.exists():
            raise ConfigError(f"{p}: taxonomy file not found.", f"pass a TOML file or one of the presets {preset_names()}.")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}.", "fix the TOML syntax.") from None
        return taxonomy_from_dict(data, str(p))
    if text not in preset_names():
        raise ConfigError(f"taxonomy {text!r} is not a preset or a file.", f"use one of {preset_names()} or a path to a TOML file.")
    data = tomllib.loads(resources.files("journey_stage.core.taxonomies").joinpath(f"{text}.toml").read_text())
    return taxonomy_from_dict(data, f"preset '{text}'")
