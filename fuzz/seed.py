#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/ from the connectors'
test fixtures (connectors/*/tests/fixtures), in the harness's frame format (fuzz/src/lib.rs):

    W <METHOD> <path?query>        or        N <event kind>
    header: value
    ...
    <empty line>
    <body bytes>

Webhook seeds carry each provider's headers, signed with the fuzz configs' secrets where the
scheme is a plain HMAC, so the fuzzer starts on both sides of every verifier. Seeds are named
by content hash, so running this again adds nothing twice. Standard library only.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NOW = 1_700_000_000  # fuzz/src/lib.rs NOW
SECRET = b"fuzz-secret"  # every `_env` secret of the fuzz configs


def fixtures(family, provider):
    d = os.path.join(ROOT, "connectors", family, "tests", "fixtures", provider)
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            yield name, f.read()


def frame(mode, headers, body):
    head = "\n".join([mode] + [f"{k}: {v}" for k, v in headers])
    return head.encode() + b"\n\n" + body


def hmac_b64(key, *parts, alg=hashlib.sha256):
    return base64.b64encode(hmac.new(key, b"".join(parts), alg).digest()).decode()


def hmac_hex(key, *parts, alg=hashlib.sha256):
    return hmac.new(key, b"".join(parts), alg).hexdigest()


def example_secret(example, key):
    """The literal value of `key = "..."` in config/examples/<example>.toml."""
    with open(os.path.join(ROOT, "config", "examples", example + ".toml")) as f:
        for line in f:
            k, _, v = line.partition("=")
            if k.strip() == key and v.strip().startswith('"'):
                return v.strip().split('"')[1].encode()
    return SECRET


def seeds():
    out = {}

    def add(target, data):
        out.setdefault(target, []).append(data)

    # generic: the example's sha256= hex scheme, and the extra base64/sha1 connector.
    gsecret = example_secret("generic", "secret")
    for name, body in fixtures("generic", "generic"):
        add("generic", frame("W POST /webhooks/api", [
            ("content-type", "application/json"),
            ("x-switchboard-signature", "sha256=" + hmac_hex(gsecret, body))], body))
        add("generic", frame("W POST /webhooks/api-b64", [
            ("x-signature", hmac_b64(SECRET, body, alg=hashlib.sha1)),
            ("x-event-id", name)], body))
        add("generic", frame("N message", [], body))

    msecret = example_secret("messenger", "app_secret")
    for name, body in fixtures("social", "meta"):
        add("meta", frame("W POST /webhooks/meta", [
            ("content-type", "application/json"),
            ("x-hub-signature-256", "sha256=" + hmac_hex(msecret, body))], body))
        add("meta", frame("N message", [("x-sb-object", "page"), ("x-sb-field", "messages"),
                                        ("x-sb-entry-id", "1"), ("x-sb-entry-time", str(NOW))], body))
    add("meta", frame("W GET /webhooks/meta?hub.mode=subscribe&hub.verify_token=x&hub.challenge=42", [], b""))

    for name, body in fixtures("social", "telegram"):
        add("telegram", frame("W POST /webhooks/tg-support", [
            ("content-type", "application/json"),
            ("x-telegram-bot-api-secret-token", example_secret("telegram", "secret_token").decode())],
            body))
        add("telegram", frame("N update", [("x-sb-bot-id", "123")], body))

    lsecret = example_secret("line", "channel_secret")
    for name, body in fixtures("social", "line"):
        add("line", frame("W POST /webhooks/line", [
            ("x-line-signature", hmac_b64(lsecret, body))], body))
        add("line", frame("N message", [], body))

    for name, body in fixtures("social", "twilio"):
        ct = ("application/x-www-form-urlencoded" if name.endswith(".form")
              else "application/json")
        add("twilio", frame("W POST /webhooks/twilio", [
            ("content-type", ct), ("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")], body))
        add("twilio", frame("N " + ("form" if ct.endswith("urlencoded") else "json"), [], body))
    add("twilio", frame("W POST /webhooks/twilio?bodySHA256=" + hashlib.sha256(b"{}").hexdigest(),
                        [("content-type", "application/json"), ("x-twilio-signature", "x")], b"{}"))

    ssecret = example_secret("slack", "signing_secret")
    for name, body in fixtures("social", "slack"):
        ct = ("application/x-www-form-urlencoded" if name.endswith(".txt")
              else "application/json")
        sig = "v0=" + hmac_hex(ssecret, f"v0:{NOW}:".encode(), body)
        add("slack", frame("W POST /webhooks/slack", [
            ("content-type", ct), ("x-slack-request-timestamp", str(NOW)),
            ("x-slack-signature", sig)], body))
        add("slack", frame("N event_callback", [], body))

    for name, body in fixtures("commerce", "shopify"):
        topic = name.removesuffix(".json").replace("_", "/")
        add("shopify", frame("W POST /webhooks/shop", [
            ("x-shopify-topic", topic), ("x-shopify-hmac-sha256", hmac_b64(SECRET, body)),
            ("x-shopify-webhook-id", "w1"), ("x-shopify-triggered-at", "2026-01-05T10:00:00Z"),
            ("x-shopify-shop-domain", "example.myshopify.com")], body))
        add("shopify", frame("N " + topic, [], body))

    for name, body in fixtures("commerce", "woocommerce"):
        topic = name.removesuffix(".json").replace("_", ".", 1).split("_")[0]
        add("woocommerce", frame("W POST /webhooks/woo", [
            ("x-wc-webhook-topic", topic), ("x-wc-webhook-signature", hmac_b64(SECRET, body)),
            ("x-wc-webhook-delivery-id", "7"), ("x-wc-webhook-source", "https://shop.example/")],
            body))
        add("woocommerce", frame("N " + topic, [("x-wc-webhook-topic", topic)], body))
    add("woocommerce", frame("W POST /webhooks/woo", [("content-type", "application/x-www-form-urlencoded")],
                             b"webhook_id=7"))

    for name, body in fixtures("commerce", "stripe"):
        sig = hmac_hex(example_secret("stripe", "webhook_secret"), f"{NOW}.".encode(), body)
        add("stripe", frame("W POST /webhooks/stripe-main", [
            ("content-type", "application/json"),
            ("stripe-signature", f"t={NOW},v1={sig},v0=deadbeef")], body))
        add("stripe", frame("N " + name.removesuffix(".json"), [], body))

    for name, body in fixtures("email", "mailgun"):
        fields = json.loads(body)
        fields.update(timestamp=str(NOW), token="t" * 50)
        fields["signature"] = hmac_hex(SECRET, str(NOW).encode(), fields["token"].encode())
        form = urllib.parse.urlencode(fields).encode()
        add("mailgun", frame("W POST /webhooks/mailgun-in", [
            ("content-type", "application/x-www-form-urlencoded")], form))
        add("mailgun", frame("N inbound", [], body))

    auth = "Basic " + base64.b64encode(b"postmark:fuzz-secret").decode()
    for name, body in fixtures("email", "postmark"):
        add("postmark", frame("W POST /webhooks/postmark-in", [
            ("content-type", "application/json"), ("authorization", auth)], body))
        add("postmark", frame("N inbound", [], body))

    auth = "Basic " + base64.b64encode(b"sendgrid:fuzz-secret").decode()
    for name, body in fixtures("email", "sendgrid"):
        ct = "multipart/form-data; boundary=xYzZY"
        add("sendgrid", frame("W POST /webhooks/sendgrid-in", [
            ("content-type", ct), ("authorization", auth),
            ("x-twilio-email-event-webhook-timestamp", str(NOW)),
            ("x-twilio-email-event-webhook-signature",
             "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=")],
            body))
        add("sendgrid", frame("N inbound", [("content-type", ct)], body))

    for name, body in fixtures("erp", "erpnext"):
        doctype = {"customer": "Customer", "payment_entry": "Payment Entry",
                   "sales_invoice": "Sales Invoice", "sales_order": "Sales Order"}[name.removesuffix(".json")]
        add("erpnext", frame("W POST /webhooks/erpnext-main", [
            ("content-type", "application/json"),
            ("x-frappe-webhook-signature", hmac_b64(SECRET, body))], body))
        add("erpnext", frame("N " + doctype, [], body))

    for name, body in fixtures("erp", "odoo"):
        stem = name.removesuffix(".json")
        model = ("res.partner" if stem == "partner" else "sale.order" if stem == "sale_order"
                 else "account.move")
        add("odoo", frame("N " + model, [], body))

    for name, body in fixtures("email", "email"):
        add("email", frame("N email", [], body))
        add("mime", body)
    add("mime", b"Ada <ADA@Example.com>\n<root@example.com>\nRe: [list] Fwd: Order 5")
    add("mime", b"multipart/form-data; boundary=b\n--b\r\nContent-Disposition: form-data; "
                b"name=\"text\"\r\n\r\nhello\r\n--b--\r\n")
    add("mime", b"<p onclick=x>Hi</p><script>x</script>\n> quoted\nOn Mon, Ada wrote:\n> old")
    return out


def main():
    total = 0
    for target, items in seeds().items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for data in items:
            path = os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest())
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(data)
            total += 1
    print(f"{total} seeds in {len(seeds())} targets")


if __name__ == "__main__":
    sys.exit(main())
