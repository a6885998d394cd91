#!/usr/bin/env python3
"""Generates the tabular feature sample, deterministically (seed 7), standard library only.

    python3 sample-data/generate_tabular.py

sample-data/customers/train.csv (800 rows) and valid.csv (200 rows): a synthetic
customer-churn table with numeric columns that have nulls (age, income, tenure_months),
a skewed count (support_calls), categoricals with nulls and rare levels (plan, country,
device), a high-cardinality id (user_id), free text and a boolean label (churned).
valid.csv has a country and a plan that train.csv never has, so the out-of-vocabulary
buckets have something to do. Everything is made up; nothing to license beyond this
repository's own licence.
"""
import csv
import math
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "customers")

PLANS = ["basic", "standard", "premium", "family", "student"]
PLAN_W = [40, 30, 15, 10, 5]
COUNTRIES = ["US", "DE", "FR", "BR", "JP", "IN", "GB", "NG", "MX", "KR"]
COUNTRY_W = [30, 12, 10, 10, 8, 8, 8, 5, 5, 4]
DEVICES = ["mobile", "desktop", "tablet"]
NOTES = ["", "asked about pricing", "called twice, resolved", "wants \"annual\" plan", "moved, new address"]


def row(rng, i, valid):
    plan = rng.choices(PLANS, PLAN_W)[0]
    country = rng.choices(COUNTRIES, COUNTRY_W)[0]
    if valid and rng.random() < 0.03:
        country = "ZA"  # never seen in train
    if valid and rng.random() < 0.02:
        plan = "enterprise"  # never seen in train
    age = rng.randint(18, 80)
    income = round(math.exp(rng.gauss(10.6, 0.5)), 2)
    tenure = rng.randint(0, 72)
    calls = min(int(rng.expovariate(0.6)), 40)
    churn_p = 0.15 + 0.05 * calls / 4 - 0.002 * tenure + (0.1 if plan == "basic" else 0)
    return {
        "user_id": 10_000 + i,
        "age": "" if rng.random() < 0.06 else age,
        "income": "" if rng.random() < 0.1 else income,
        "tenure_months": "" if rng.random() < 0.04 else tenure,
        "support_calls": calls,
        "plan": "" if rng.random() < 0.03 else plan,
        "country": "" if rng.random() < 0.05 else country,
        "device": rng.choice(DEVICES),
        "note": rng.choice(NOTES),
        "churned": "true" if rng.random() < max(0.02, min(churn_p, 0.9)) else "false",
    }


def main():
    rng = random.Random(7)
    os.makedirs(OUT, exist_ok=True)
    fields = ["user_id", "age", "income", "tenure_months", "support_calls", "plan", "country",
              "device", "note", "churned"]
    start = 0
    for name, n, valid in [("train.csv", 800, False), ("valid.csv", 200, True)]:
        with open(os.path.join(OUT, name), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
            w.writeheader()
            for i in range(start, start + n):
                w.writerow(row(rng, i, valid))
        start += n


if __name__ == "__main__":
    main()
