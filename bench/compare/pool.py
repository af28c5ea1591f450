#!/usr/bin/env python3
"""Writes N signed, distinct paid, open orders (Shopify's documented sample, compact JSON, own id
and name per line) as `hmac<TAB>body` lines for shopify-pool.lua. usage: pool.py SECRET N OUT"""
import base64, hashlib, hmac, json, os, sys
secret, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
here = os.path.dirname(os.path.realpath(__file__))
fixture = os.path.join(here, "..", "..", "tests", "fixtures", "orders-create.json")
doc = json.load(open(fixture))
doc["financial_status"] = "paid"
# Open orders: the sample carries a cancelled_at, which orderlane (unlike the peer) acts on.
doc["cancelled_at"] = None
doc["cancel_reason"] = None
with open(out, "w") as f:
    for i in range(n):
        doc["id"] = 7_100_000_000_000 + i
        doc["admin_graphql_api_id"] = f"gid://shopify/Order/{doc['id']}"
        doc["name"] = f"#B{i}"
        b = json.dumps(doc, separators=(",", ":"))
        sig = base64.b64encode(hmac.new(secret.encode(), b.encode(), hashlib.sha256).digest()).decode()
        f.write(sig + "\t" + b + "\n")
