"""Next best action: a TOML playbook of ordered rules over the predictions (SPEC section 10)."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from journey_stage.core.errors import ConfigError
from journey_stage.core.taxonomy import LAPSED, ROLES

CONDITIONS = {"stages", "churn_at_least", "advocacy_at_least", "conversion_at_least", "feature_at_most"}


@dataclass(frozen=True)
class Rule:
    name: str
    action: str
    message: str
    conditions: dict

    def because(self, role: str, probs: dict[str, float | None], features: dict[str, float]) -> str | None:
        """Why the rule fires for this customer, or None when it does not."""
        why = []
        c = self.conditions
        if "stages" in c:
            if role not in c["stages"]:
                return None
            why.append(f"predicted stage is {role}")
        for task in ("churn", "advocacy", "conversion"):
            key = f"{task}_at_least"
            if key in c:
                p = probs.get(task)
                if p is None or (isinstance(p, float) and math.isnan(p)) or p < c[key]:
                    return None
                why.append(f"{task} likelihood {p:.2f} >= {c[key]:g}")
        for name, limit in c.get("feature_at_most", {}).items():
            v = features.get(name)
            if v is None or (isinstance(v, float) and math.isnan(v)) or v > limit:
                return None
            why.append(f"{name} = {v:g} <= {limit:g}")
        return "; ".join(why) or "no other rule applied"


@dataclass(frozen=True)
class Playbook:
    rules: tuple[Rule, ...]
    source: str

    @property
    def features_needed(self) -> set[str]:
        return {n for r in self.rules for n in r.conditions.get("feature_at_most", {})}

    def decide(self, role: str, probs: dict[str, float | None], features: dict[str, float]) -> dict:
        for rule in self.rules:
            because = rule.because(role, probs, features)
            if because is not None:
                return {"action": rule.action, "message": rule.message, "because": because, "rule": rule.name}
        return {"action": "no_action", "message": "", "because": "no rule matched", "rule": None}


@lru_cache(maxsize=8)
def load_playbook(path: str | Path | None = None) -> Playbook:
    """The default playbook shipped with the package, or a TOML file (parsed once per path)."""
    if path is None:
        text, source = resources.files("journey_stage.model").joinpath("playbook.toml").read_text(), "default playbook"
    else:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"{p}: playbook file not found.", "pass an existing TOML file (see model/playbook.toml).")
        text, source = p.read_text(), str(p)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}.", "fix the TOML syntax.") from None
    rules = []
    for i, r in enumerate(data.get("rules", [])):
        missing = [k for k in ("name", "action") if k not in r]
        unknown = set(r) - CONDITIONS - {"name", "action", "message"}
        if missing or unknown:
            raise ConfigError(
                f"{source}: rules[{i}]: missing {missing} / unknown keys {sorted(unknown)}.",
                f"each rule needs name and action; conditions are {sorted(CONDITIONS)}.",
            )
        bad = [s for s in r.get("stages", []) if s not in (*ROLES, LAPSED)]
        if bad:
            raise ConfigError(f"{source}: rules[{i}] ({r['name']}): unknown stages {bad}.", f"use roles {[*ROLES, LAPSED]}.")
        conds = {k: v for k, v in r.items() if k in CONDITIONS}
        rules.append(Rule(r["name"], r["action"], r.get("message", ""), conds))
    if not rules:
        raise ConfigError(f"{source}: no [[rules]].", "add at least one rule.")
    return Playbook(tuple(rules), source)
