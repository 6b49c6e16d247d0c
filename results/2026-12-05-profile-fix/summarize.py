"""Mean ± std (numpy std, ddof 0) of the student cells in cells.jsonl, per set and protocol."""
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
rows = {}
with open(os.path.join(HERE, "cells.jsonl")) as f:
    for line in f:
        rec = json.loads(line)
        name = os.path.basename(rec["file"])[: -len(".json")]
        variant_set, proto, _seed = name.rsplit(".", 2)
        rows.setdefault((variant_set, proto), []).append(rec["cell"]["mean"])
for (variant_set, proto), accs in sorted(rows.items()):
    std = statistics.pstdev(accs) if len(accs) > 1 else 0.0
    print(f"{variant_set:28s} {proto:5s} {statistics.mean(accs):6.2f} ± {std:4.2f}  (seeds: {len(accs)}; {accs})")
