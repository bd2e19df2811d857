#!/usr/bin/env python3
"""Input for scripts/bench-merge: the export files a nightly job sees over three days.

    python3 scripts/bench_merge_data.py OUTDIR --rows 5000000

Rows come from ../shared/bench/gen.py (its contact and opportunity generators), so the shapes
are the ones the performance benchmark uses. Writes, under OUTDIR:

    people/day1/contacts.csv         --rows HubSpot contacts (+1% newer duplicates)
    people/day2/contacts.csv         a daily delta: 1% of day1's contacts modified, 1% new
    people/day1b/contacts.csv        day1 re-exported with 1% of its rows modified (a changed file)
    opportunities/day1/Opportunity.csv   --rows Salesforce opportunities (a full snapshot)
    opportunities/day2/Opportunity.csv   the next day's snapshot: 2% of deals moved stage

Standard library only; the same --rows gives the same bytes. Never write into the repository.
"""
import argparse
import csv
import os
import random
import sys

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "bench")
sys.path.insert(0, BENCH)
import gen  # noqa: E402

DAY2 = "2026-01-02 09:00"
DAY2_SF = "2026-01-02T09:00:00.000Z"


def contacts_day1(out, rows):
    owners = [f"{random.Random(42 + i).choice(gen.FIRST)} {random.Random(42 - i).choice(gen.LAST)}"
              for i in range(60)]
    gen.gen_contacts(os.path.join(out, "contacts.csv"), rows, random.Random(42003), owners)


def contacts_changes(day1, day2_dir, day1b_dir):
    """One pass over day1: every 100th row changed goes to the delta and to the re-export."""
    with open(day1, newline="", encoding="utf-8") as src, \
            open(os.path.join(day2_dir, "contacts.csv"), "w", newline="", encoding="utf-8") as delta, \
            open(os.path.join(day1b_dir, "contacts.csv"), "w", newline="", encoding="utf-8") as again:
        r = csv.reader(src)
        wd = csv.writer(delta, quoting=csv.QUOTE_ALL, lineterminator="\n")
        wa = csv.writer(again, quoting=csv.QUOTE_ALL, lineterminator="\n")
        header = next(r)
        wd.writerow(header)
        wa.writerow(header)
        rid, stage, modified = header.index("Record ID"), header.index("Lifecycle Stage"), \
            header.index("Last Modified Date")
        max_id = 0
        for i, row in enumerate(r):
            max_id = max(max_id, int(row[rid]))
            if i % 100 == 7:
                row[stage] = "Customer"
                row[modified] = DAY2
                wd.writerow(row)
            wa.writerow(row)
        # New contacts, as many as changed ones, above every existing id.
        for j in range((i + 1) // 100):
            new = list(row)
            new[rid] = str(max_id + 1 + j)
            new[modified] = DAY2
            wd.writerow(new)


def opportunities(day1_dir, day2_dir, rows):
    users = [gen.sf_id("0055g00000", 300 + i) for i in range(max(20, rows // 5000))]
    accts = gen.gen_accounts(os.path.join(day1_dir, "_accounts.csv"), max(rows // 10, 10),
                             random.Random(42001), users)
    os.remove(os.path.join(day1_dir, "_accounts.csv"))
    day1 = os.path.join(day1_dir, "Opportunity.csv")
    gen.gen_opportunities(day1, rows, random.Random(42002), users, accts)
    with open(day1, newline="", encoding="utf-8") as src, \
            open(os.path.join(day2_dir, "Opportunity.csv"), "w", newline="", encoding="utf-8") as dst:
        r = csv.reader(src)
        w = csv.writer(dst, quoting=csv.QUOTE_ALL, lineterminator="\n")
        header = next(r)
        w.writerow(header)
        stage, mod, stamp = header.index("StageName"), header.index("LastModifiedDate"), \
            header.index("SystemModstamp")
        for i, row in enumerate(r):
            if i % 50 == 3:
                row[stage] = "Negotiation/Review" if row[stage] != "Negotiation/Review" else "Closed Lost"
                row[mod] = row[stamp] = DAY2_SF
            w.writerow(row)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    ap.add_argument("--rows", type=int, default=5_000_000)
    a = ap.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.abspath(a.outdir).startswith(repo + os.sep):
        sys.exit(f"refusing to write generated data inside the repository ({repo})")
    d = {k: os.path.join(a.outdir, k) for k in
         ("people/day1", "people/day2", "people/day1b", "opportunities/day1", "opportunities/day2")}
    for p in d.values():
        os.makedirs(p, exist_ok=True)
    contacts_day1(d["people/day1"], a.rows)
    contacts_changes(os.path.join(d["people/day1"], "contacts.csv"), d["people/day2"], d["people/day1b"])
    opportunities(d["opportunities/day1"], d["opportunities/day2"], a.rows)
    for k, p in d.items():
        for f in os.listdir(p):
            print(f"{k}/{f}\t{os.path.getsize(os.path.join(p, f)) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
