"""A cell's config made from plain containers: the schema's dataclasses built directly from a
resolved container (``config_of``), and its ``DictConfig`` (``cfg_of``). ``slnn.sweep.grid``
builds every cell of a grid this way; a worker (``slnn.sweep.worker``) makes a chunk file's cells
this way. Both make what ``OmegaConf.to_object`` makes of the container merged into the schema
(``tests/test_grid.py``), for a fraction of its cost."""

from __future__ import annotations

import dataclasses

from omegaconf import DictConfig, OmegaConf

from slnn.app.schema import Config, to_config


class _Slow(Exception):
    """This cell needs the general path (the composed base, copied and updated)."""


def _plain_copy(x):
    if isinstance(x, dict):
        return {k: _plain_copy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain_copy(v) for v in x]
    return x


def _plan(template, plain):
    """How to make ``template``'s dataclasses from a container shaped like ``plain`` (the base's
    resolved container), worked out once per base: ``(class, sections, lists)`` for a dataclass
    (its fields that are dataclasses, with their plans, and those that hold lists or dicts, to be
    copied), None for a plain value; ``_Slow`` where this shortcut cannot be sure to match what
    ``OmegaConf.to_object`` makes."""
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        fields = dataclasses.fields(template)
        if (not isinstance(plain, dict) or any(not f.init for f in fields)
                or set(plain) != {f.name for f in fields}):
            raise _Slow
        sections, lists = {}, []
        for f in fields:
            sub = _plan(getattr(template, f.name), plain[f.name])
            if sub is not None:
                sections[f.name] = sub
            elif f.name in plain and not isinstance(plain[f.name], (str, int, float, bool,
                                                                    type(None))):
                lists.append(f.name)
        return type(template), sections, lists
    if isinstance(plain, dict) and not (isinstance(template, dict) and not any(
            dataclasses.is_dataclass(v) for v in template.values())):
        raise _Slow  # a dict where the template has a structured value (or none)
    return None


def _build(plan, plain: dict):
    """``plain`` as the dataclasses of ``plan`` (``_plan``'s), made the way ``OmegaConf.to_object``
    makes them: each one's ``__post_init__`` checks run, and each gets its own lists."""
    cls, sections, lists = plan
    kw = dict(plain)
    for name, sub in sections.items():
        kw[name] = _build(sub, plain[name])
    for name in lists:
        kw[name] = _plain_copy(plain[name])
    return cls(**kw)


def cfg_of(container: dict) -> DictConfig:
    """A cell's ``DictConfig`` from its resolved container, for what a run does with it (its YAML,
    its params): the container is already checked against the schema (its ``Config`` says so),
    so it is not merged into the schema again (30 ms a cell, as much as recording the run)."""
    return OmegaConf.create(container)


def config_of(container: dict) -> Config:
    """The validated ``Config`` of a resolved container the sweep made and checked (a chunk
    file's): the schema's dataclasses built directly, each one's ``__post_init__`` checks run, as
    ``to_config`` makes them from the container merged into the schema (which it falls back to
    for a container of another shape)."""
    try:
        return _build(_plan(Config(), container), container)
    except _Slow:
        return to_config(OmegaConf.merge(OmegaConf.structured(Config), container))
