#!/usr/bin/env python3
"""Independent readers judge a hive: hivex (hivexregedit --export) and regipy must both read
HIVE and see exactly the keys and values of OURS, a JSON dump made by vhdtool's own reader:
[{"path": "\\A\\B", "values": [{"name": "", "type": 3, "hex": "00ff"}]}, ...].

Usage: regf_oracle.py HIVE OURS.json [REGIPY_SUBTREE [both|regipy]]
hivex judges the whole hive; regipy the keys under REGIPY_SUBTREE (default: all). regipy keeps
every key object of a walk in memory (gigabytes for a whole SYSTEM hive), so the SYSTEM tests
give it the subtree they touch.
Exit 0 and "ok ..." on agreement; exit 1 with the differences otherwise.
Run by tests/regf.rs and tests/windows_bcd.rs; regipy is from PyPI (pip install regipy==6.5.0),
hivexregedit from Debian libwin-hivex-perl.
"""
import json
import re
import struct
import subprocess
import sys


def load_ours(path):
    with open(path) as f:
        dump = json.load(f)
    keys = {}
    for k in dump:
        keys[k["path"].lower()] = {
            v["name"].lower(): (v["type"], bytes.fromhex(v["hex"])) for v in k["values"]
        }
    return keys


def unescape(s):
    return re.sub(r'\\(.)', r'\1', s)


def hivex_keys(hive):
    out = subprocess.run(
        ["hivexregedit", "--export", hive, "\\"], capture_output=True, check=True
    ).stdout.decode("utf-8", "surrogateescape")
    keys = {}
    cur = None
    for line in out.splitlines():
        if line.startswith("[") and line.endswith("]"):
            cur = line[1:-1]
            if cur != "\\":
                cur = cur.rstrip("\\")
            keys[cur.lower()] = {}
            continue
        if cur is None or not line or line.startswith("Windows Registry"):
            continue
        m = re.match(r'^(@|"((?:[^"\\]|\\.)*)")=(.*)$', line)
        if not m:
            raise SystemExit(f"hivex export: cannot parse line {line!r}")
        name = "" if m.group(1) == "@" else unescape(m.group(2))
        val = m.group(3)
        if val.startswith("dword:"):
            vtype, data = 4, struct.pack("<I", int(val[6:], 16))
        elif val.startswith("hex("):
            t, _, hx = val[4:].partition("):")
            vtype = int(t, 16)
            data = bytes(int(b, 16) for b in hx.split(",") if b)
        elif val.startswith("hex:"):
            vtype, data = 3, bytes(int(b, 16) for b in val[4:].split(",") if b)
        elif val.startswith('"'):
            vtype, data = 1, (unescape(val[1:-1]) + "\0").encode("utf-16-le")
        else:
            raise SystemExit(f"hivex export: unknown value form {line!r}")
        keys[cur.lower()][name.lower()] = (vtype, data)
    return keys


def regipy_norm(vtype, data):
    """What regipy shows for raw data of this type (the comparison is on regipy's view)."""
    if vtype in (1, 2):
        # regipy keeps what follows a NUL and strips the trailing NULs only
        return data.decode("utf-16-le", "replace").rstrip("\0")
    if vtype == 7:
        # regipy lists the non-empty strings
        return [x for x in data.decode("utf-16-le", "replace").split("\0") if x]
    if vtype == 4 and len(data) == 4:
        return struct.unpack("<I", data)[0]
    if vtype == 11 and len(data) == 8:
        return struct.unpack("<Q", data)[0]
    return data.hex()


REG_TYPES = {"REG_NONE": 0, "REG_SZ": 1, "REG_EXPAND_SZ": 2, "REG_BINARY": 3, "REG_DWORD": 4,
             "REG_DWORD_BIG_ENDIAN": 5, "REG_LINK": 6, "REG_MULTI_SZ": 7,
             "REG_RESOURCE_LIST": 8, "REG_FULL_RESOURCE_DESCRIPTOR": 9,
             "REG_RESOURCE_REQUIREMENTS_LIST": 10, "REG_QWORD": 11}


def regipy_keys(hive, subtree):
    from regipy.registry import RegistryHive

    h = RegistryHive(hive)
    keys = {}
    root = h.get_key(subtree)
    stack = [(subtree, root)]
    while stack:
        path, k = stack.pop()
        vals = {}
        for v in k.iter_values(as_json=False, trim_values=False):
            name = "" if v.name == "(default)" else v.name
            t = v.value_type
            vals[name.lower()] = (REG_TYPES.get(t, t), v.value)
        keys[path.lower()] = vals
        for s in k.iter_subkeys():
            stack.append(((path.rstrip("\\") + "\\" + s.name), s))
    return keys


def compare(tool, theirs, ours, normalize):
    errors = []
    for p in sorted(set(ours) | set(theirs)):
        if p not in theirs:
            errors.append(f"{tool}: key {p} missing")
            continue
        if p not in ours:
            errors.append(f"{tool}: extra key {p}")
            continue
        a, b = ours[p], theirs[p]
        for n in sorted(set(a) | set(b)):
            if n not in b:
                errors.append(f"{tool}: {p} value {n!r} missing")
            elif n not in a:
                errors.append(f"{tool}: {p} extra value {n!r}")
            else:
                ta, da = a[n]
                tb, db = b[n]
                if tool == "regipy" and isinstance(ta, int) and ta > 0xFFFF and tb == ta & 0xFFFF:
                    # device property types (0xFFFFxxxx): regipy shows them masked to 16 bits and
                    # decodes the data by guess; compare the text
                    if isinstance(db, str):
                        ta, da, tb = 1, (da.decode("utf-16-le", "replace").rstrip("\0")), 1
                        db = db.rstrip("\0")
                        if da != db:
                            errors.append(f"{tool}: {p} value {n!r}: ours {da!r}, theirs {db!r}")
                        continue
                    ta = tb
                if ta != tb or normalize(ta, da) != normalize(tb, db, theirs=True):
                    errors.append(f"{tool}: {p} value {n!r}: ours type {ta} {normalize(ta, da)!r}, theirs type {tb} {db!r}"[:400])
    return errors


def main():
    hive, ours_path = sys.argv[1], sys.argv[2]
    subtree = sys.argv[3] if len(sys.argv) > 3 else "\\"
    which = sys.argv[4] if len(sys.argv) > 4 else "both"
    ours = load_ours(ours_path)
    errors = []
    nvals = sum(len(v) for v in ours.values())
    if which in ("hivex", "both"):
        errors += compare("hivex", hivex_keys(hive), ours, lambda t, d, theirs=False: d)
    if which in ("regipy", "both"):
        def norm(t, d, theirs=False):
            if theirs:
                if isinstance(d, (bytes, bytearray)):
                    return regipy_norm(t, bytes(d))
                if t == 7 and isinstance(d, list):
                    return [x for x in d if x]
                return d
            return regipy_norm(t, d)
        prefix = subtree.lower().rstrip("\\")
        mine = {p: v for p, v in ours.items() if p == subtree.lower() or p.startswith(prefix + "\\")}
        errors += compare("regipy", regipy_keys(hive, subtree), mine, norm)
    if errors:
        print("\n".join(errors[:50]))
        print(f"{len(errors)} differences")
        sys.exit(1)
    judges = f"hivex {len(ours)} keys, {nvals} values; " if which == "both" else ""
    print(f"ok: {judges}regipy under {subtree}")


if __name__ == "__main__":
    main()
