"""Record delimiting for ASTERIX: a fast FSPEC/item walker whose tables come from libasterix.

Why this exists next to libasterix: libasterix parses a record into a tree of
``Bits`` objects (one Python object per sub-field, bit-level slicing); on one
core it decodes about 9k CAT062 records/s, below the gateway's 20k records/s
budget (docs/icd/asterix.md, "Performance"). The *layout* of every item (its
size rule: fixed, FX-extended, repetitive, explicit, compound) is still taken
from libasterix's generated specification classes, once, at import time. So
the wire format stays data from one well-kept source (as with cantools' DBC),
and this module only walks bytes with those tables. The tests check the
walker against libasterix's own strict parser on generated records.

EUROCONTROL ASTERIX Part 1 §4 (record structure): a record is an FSPEC (one
bit per field reference number, FRN; bit 1 of each octet is the FX
extension bit) followed by the present items in FRN order. Records are not
length-prefixed, so a record that cannot be walked ends the data block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from asterix import base as ab

# Item size rules (the first tuple element is the kind).
FIXED = 0  # (FIXED, n_bytes)
EXTENDED = 1  # (EXTENDED, (group_bytes, ...)): each group ends with an FX bit
REPETITIVE = 2  # (REPETITIVE, rep_bytes, element_bytes): count octet(s) then elements
REPETITIVE_FX = 3  # (REPETITIVE_FX, element_bytes): elements each ending with an FX bit
EXPLICIT = 4  # (EXPLICIT,): the first octet is the item length, itself included
COMPOUND = 5  # (COMPOUND, fspec_max_bytes, (sub rules by sub-FRN, None = undefined))

Rule = tuple[Any, ...]


class WalkError(Exception):
    """Internal: a record cannot be walked. Turned into ``Rejected`` by the codec."""

    def __init__(self, reason: str, item: str, offset: int, message: str) -> None:
        self.reason = reason
        self.item = item
        self.offset = offset
        super().__init__(message)


def _bits_to_bytes(bits: int, what: str) -> int:
    if bits % 8:
        raise TypeError(f"{what}: {bits} bits is not a whole number of octets")
    return bits // 8


def _variation_of(rule_variation: Any) -> Any:
    # Context-dependent items keep their default structure for parsing
    # (libasterix does the same in RuleVariationDependent._parse).
    var = getattr(rule_variation, "cv_variation", None)
    return var if var is not None else rule_variation.cv_default_variation


def compile_variation(var: Any, what: str) -> Rule:
    """Size rule for one libasterix ``Variation`` class."""
    if issubclass(var, ab.Element | ab.Group):
        return (FIXED, _bits_to_bytes(var.cv_bit_size, what))
    if issubclass(var, ab.Extended):
        groups = []
        for group in var.cv_items_list:
            bits = sum(1 if x is None else x[1] for x in group)
            groups.append(_bits_to_bytes(bits, what))
        return (EXTENDED, tuple(groups))
    if issubclass(var, ab.Repetitive):
        if var.cv_rep_bytes is None:
            # FX-terminated: element bits + 1 FX bit make whole octets.
            return (REPETITIVE_FX, _bits_to_bytes(var.cv_variation.cv_bit_size + 1, what))
        inner = compile_variation(var.cv_variation, what)
        if inner[0] != FIXED:
            raise TypeError(f"{what}: repetitive of a variable-size element")
        return (REPETITIVE, var.cv_rep_bytes, inner[1])
    if issubclass(var, ab.Explicit):
        return (EXPLICIT,)
    if issubclass(var, ab.Compound):
        subs: list[Rule | None] = []
        for nsp in var.cv_items_list:
            if nsp is None:
                subs.append(None)
            else:
                subs.append(compile_variation(_variation_of(nsp.cv_rule), f"{what}/{nsp.cv_name}"))
        return (COMPOUND, var.cv_fspec_max_bytes, tuple(subs))
    raise TypeError(f"{what}: unsupported variation {var.__name__}")


@dataclass(frozen=True, slots=True)
class RecordLayout:
    """Compiled UAP of one category edition.

    ``rules[frn - 1]`` is the size rule of FRN ``frn`` or None for a spare or
    RFS slot (an FSPEC bit set there is a decode error). ``names[frn - 1]`` is
    the item name ("010", "SP", ...). ``frn_of`` maps item name to FRN.
    """

    category: int
    edition: tuple[int, int]
    fspec_max_bytes: int
    rules: tuple[Rule | None, ...]
    names: tuple[str, ...]
    frn_of: dict[str, int]


def compile_layout(spec: Any) -> RecordLayout:
    """Compile a libasterix ``AstCat`` class (e.g. ``Cat_062_1_21``) to a walker table."""
    record = spec.cv_uap.cv_record
    rules: list[Rule | None] = []
    names: list[str] = []
    for uap_item in record.cv_items_list:
        if issubclass(uap_item, ab.UapItem):
            nsp = uap_item.cv_non_spare
            name = nsp.cv_name
            rules.append(compile_variation(_variation_of(nsp.cv_rule), f"I{spec.cv_category:03d}/{name}"))
            names.append(name)
        else:
            # Spare FRN, or RFS (Random Field Sequencing, unused by CAT034/048/062/065).
            rules.append(None)
            names.append("spare")
    return RecordLayout(
        category=spec.cv_category,
        edition=tuple(spec.cv_edition),
        fspec_max_bytes=record.cv_fspec_max_bytes,
        rules=tuple(rules),
        names=tuple(names),
        frn_of={n: i + 1 for i, n in enumerate(names) if n != "spare"},
    )


# For each FSPEC octet value: the 0-based positions (0..6) of its set data bits.
SET_BITS: tuple[tuple[int, ...], ...] = tuple(
    tuple(i for i in range(7) if v & (0x80 >> i)) for v in range(256)
)


def item_size(buf: bytes, off: int, end: int, rule: Rule, item: str) -> int:
    """Bytes taken by one item starting at ``off``; raises WalkError."""
    kind = rule[0]
    if kind == FIXED:
        return int(rule[1])
    if kind == EXTENDED:
        o = off
        for n in rule[1]:
            o += n
            if o > end:
                raise WalkError("truncated", item, off, "extended item runs past the end of the block")
            if not buf[o - 1] & 1:
                return int(o - off)
        raise WalkError("decode", item, o - 1, "FX set in the last defined octet of an extended item")
    if kind == EXPLICIT:
        if off >= end:
            raise WalkError("truncated", item, off, "explicit item length octet missing")
        n = int(buf[off])
        if n == 0:
            raise WalkError("decode", item, off, "explicit item of length 0")
        return n
    if kind == REPETITIVE:
        rep, elem = rule[1], rule[2]
        if off + rep > end:
            raise WalkError("truncated", item, off, "repetition factor missing")
        return int(rep) + int.from_bytes(buf[off : off + rep], "big") * int(elem)
    if kind == REPETITIVE_FX:
        elem = rule[1]
        o = int(off)
        while True:
            o += int(elem)
            if o > end:
                raise WalkError("truncated", item, off, "repetitive item runs past the end of the block")
            if not buf[o - 1] & 1:
                return o - off
    # COMPOUND: its own FSPEC, then the present sub-items in order.
    fmax, subs = rule[1], rule[2]
    o = off
    present: list[int] = []
    base = 0
    n_fspec = 0
    while True:
        if o >= end:
            raise WalkError("truncated", item, o, "compound FSPEC runs past the end of the block")
        b = buf[o]
        o += 1
        n_fspec += 1
        present.extend(base + i for i in SET_BITS[b])
        base += 7
        if not b & 1:
            break
        if n_fspec >= fmax:
            raise WalkError("decode", item, o - 1, "compound FSPEC longer than the UAP allows")
    for i in present:
        sub = subs[i] if i < len(subs) else None
        if sub is None:
            raise WalkError("decode", item, o, f"compound sub-field {i + 1} is not defined")
        o += item_size(buf, o, end, sub, item)
        if o > end:
            raise WalkError("truncated", item, off, "compound item runs past the end of the block")
    return o - off


def walk_record(buf: bytes, off: int, end: int, layout: RecordLayout) -> tuple[dict[int, int], int]:
    """Walk one record at ``buf[off:end]``.

    Returns ({frn: byte offset of the item}, offset after the record). Raises
    WalkError("truncated" | "decode") when the record cannot be delimited.
    """
    rules = layout.rules
    n_rules = len(rules)
    frns: list[int] = []
    base = 1
    o = off
    n_fspec = 0
    while True:
        if o >= end:
            raise WalkError("truncated", "FSPEC", o, "FSPEC runs past the end of the block")
        b = buf[o]
        o += 1
        n_fspec += 1
        for i in SET_BITS[b]:
            frns.append(base + i)
        base += 7
        if not b & 1:
            break
        if n_fspec >= layout.fspec_max_bytes:
            raise WalkError("decode", "FSPEC", o - 1, "FSPEC longer than the UAP allows")
    if not frns:
        raise WalkError("decode", "FSPEC", off, "empty FSPEC (no item present)")
    pos: dict[int, int] = {}
    for frn in frns:
        rule = rules[frn - 1] if frn <= n_rules else None
        if rule is None:
            raise WalkError("decode", f"FRN{frn}", o, f"FSPEC bit set for undefined FRN {frn}")
        pos[frn] = o
        o += item_size(buf, o, end, rule, layout.names[frn - 1])
        if o > end:
            raise WalkError(
                "truncated", layout.names[frn - 1], pos[frn], "item runs past the end of the block"
            )
    return pos, o


def compound_offsets(buf: bytes, off: int, rule: Rule | None) -> dict[int, int]:
    """{sub-field index (0-based): offset} of a compound item already checked by walk_record."""
    assert rule is not None
    assert rule[0] == COMPOUND
    subs = rule[2]
    present: list[int] = []
    o = off
    base = 0
    while True:
        b = buf[o]
        o += 1
        present.extend(base + i for i in SET_BITS[b])
        base += 7
        if not b & 1:
            break
    out: dict[int, int] = {}
    for i in present:
        out[i] = o
        o += item_size(buf, o, len(buf), subs[i], "compound")
    return out


# ---------------------------------------------------------------------- same-layout runs
#
# Why: the records of one data block usually repeat one layout (same FSPEC, same
# variable-item lengths), so their items sit at the same offsets in every record.
# A record that has already been walked yields the few bytes the walker's
# decisions depend on (FSPEC octets, FX bits of extended and FX-repetitive items,
# repetition factors, explicit lengths, compound FSPECs); every later record
# whose bytes pass the same tests walks identically (same length, same item
# offsets, no error), so a whole run can be sliced at one stride without
# walking it (drivers/asterix/codec.py, fast path).

Check = tuple[int, int, int]  # (byte offset in the record, mask, expected masked value)


def _item_checks(buf: bytes, o: int, base: int, rule: Rule, checks: list[Check]) -> None:
    kind = rule[0]
    if kind == FIXED:
        return
    if kind in (EXTENDED, REPETITIVE_FX):
        sizes = rule[1] if kind == EXTENDED else None
        i = 0
        while True:
            o += sizes[i] if sizes is not None else rule[1]
            i += 1
            fx = buf[o - 1] & 1
            checks.append((o - 1 - base, 1, fx))
            if not fx:
                return
    if kind == EXPLICIT:
        checks.append((o - base, 0xFF, buf[o]))
        return
    if kind == REPETITIVE:
        checks.extend((o + i - base, 0xFF, buf[o + i]) for i in range(rule[1]))
        return
    # COMPOUND: its FSPEC octets exactly, then each present sub-item.
    subs = rule[2]
    present: list[int] = []
    sub_base = 0
    while True:
        b = buf[o]
        checks.append((o - base, 0xFF, b))
        o += 1
        present.extend(sub_base + i for i in SET_BITS[b])
        sub_base += 7
        if not b & 1:
            break
    for i in present:
        _item_checks(buf, o, base, subs[i], checks)
        o += item_size(buf, o, len(buf), subs[i], "compound")


def layout_checks(buf: bytes, off: int, pos: dict[int, int], layout: RecordLayout) -> list[Check]:
    """Byte tests that pin the layout of the record at ``off``, already walked to ``pos``.

    Any record of the same block whose bytes pass every test (``byte & mask ==
    value`` at the same offset from its start) has the same length and item
    offsets as this one and walks without error (given that it fits the block).
    """
    checks: list[Check] = []
    o = off
    while True:
        b = buf[o]
        checks.append((o - off, 0xFF, b))
        o += 1
        if not b & 1:
            break
    rules = layout.rules
    for frn, p in pos.items():
        rule = rules[frn - 1]
        assert rule is not None  # walk_record rejected undefined FRNs
        _item_checks(buf, p, off, rule, checks)
    return checks


def same_layout_run(
    buf: bytes, off: int, end: int, length: int, pos: dict[int, int], layout: RecordLayout
) -> int:
    """How many records from ``off`` on (before ``end``) share the layout of the first one.

    The first record has been walked (``pos``, ``length``). Its layout tests
    (:func:`layout_checks`) are applied to every ``length``-byte stride of the
    block at once; the run ends at the first stride that fails one (that
    record is then walked), or where the block has no room for another.
    """
    checks = layout_checks(buf, off, pos, layout)
    m = (end - off) // length
    view = np.frombuffer(buf, np.uint8, count=m * length, offset=off).reshape(m, length)
    cols, masks, vals = (np.array(c, np.intp) for c in zip(*checks, strict=True))
    ok = ((view[:, cols] & masks) == vals).all(axis=1)
    return m if ok.all() else int(np.argmin(ok))
