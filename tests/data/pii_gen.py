#!/usr/bin/env python3
"""pii_gen.py - writes pii_labeled.tsv, the labeled set of test_redact.

    python3 tests/data/pii_gen.py > tests/data/pii_labeled.tsv

Each line: CLASS <TAB> 1|0 <TAB> TEXT.  1 = TEXT contains PII of CLASS,
each instance marked {{like this}}; the expected redaction replaces every
marked span by [REDACTED:CLASS] and leaves the rest unchanged.  0 = a tricky
negative for CLASS: nothing in TEXT may be redacted (by any class).
Deterministic (fixed seed); the values are synthetic (documentation ranges,
test card numbers, generated check digits), never real people's data.
"""
import random

R = random.Random(20240605)
rows = []


def pos(cls, text):
    rows.append((cls, 1, text))


def neg(cls, text):
    rows.append((cls, 0, text))


# ------------------------------------------------------------------ email
first = ["john", "maria", "li.wei", "o_connor", "anna-lena", "raj", "zoe", "x", "dev+alerts",
         "first.last", "m.jones99", "support", "noreply", "sales.team", "q1_report"]
doms = ["example.com", "mail.example.org", "corp.example.co.uk", "example.io", "sub.dept.example.net",
        "example-mail.de", "uni.example.edu", "example.travel", "xn--bcher-kva.example"]
ctx_email = ["Contact me at {} if you have questions.", "Send the report to {}.",
             "{} wrote: see attached", "CC: {}, thanks", "Email: <{}>", "reply to ({}) please",
             "Mein Kontakt ist {} – danke!", "Per favore scrivi a {}.", "\"{}\" is my address"]
for i in range(28):
    e = "%s@%s" % (R.choice(first), R.choice(doms))
    pos("email", R.choice(ctx_email).format("{{%s}}" % e))
pos("email", "two addresses: {{a@example.com}} and {{b.c@example.org}}")
for t in ["user at example dot com", "the @example handle on social media", "john@localhost is local",
          "email@ is incomplete", "@mention someone", "price is 5@10 each", "foo@bar",
          "git@github: the ssh shorthand", "a.b@c", "file name report@2x.png",
          "version pkg@1.2 installed", "join #channel @ 10pm"]:
    neg("email", t)

# ------------------------------------------------------------------ phone
phones = ["+1 555 123 4567", "+1 (555) 123-4567", "+1-800-555-0199", "+44 20 7946 0958",
          "+442079460958", "+49 30 12345678", "+33 1 23 45 67 89", "+91-98765-43210",
          "+86 138 0013 8000", "+61 2 9876 5432", "+81 3-1234-5678", "+34 912 345 678",
          "(555) 123-4567", "555-123-4567", "555.123.4567", "555 123 4567", "(555)123-4567",
          "020 7946 0958", "030 1234 5678", "01632 960983", "01 23 45 67 89", "06.12.34.56.78",
          "+39 06 6982 1234", "+7 495 123-45-67", "+55 11 91234-5678", "+353 1 234 5678"]
ctx_phone = ["Call me at {} tomorrow.", "Phone: {}", "tel {} (mobile)", "my number is {}, text first",
             "Reach support on {}.", "Fax {} / office"]
for p in phones:
    pos("phone", R.choice(ctx_phone).format("{{%s}}" % p))
for t in ["Order #5551234567 shipped", "serial SN-1234-5678-90", "ticket 12-34-56-78",
          "date 2024-01-15 at 10:30", "ISBN 978-3-16-148410-0", "part no. 123-4567",
          "tracking 1Z999AA10123456784", "invoice 2023/0456/789", "build 20240115.1234",
          "coordinates 51.5074, -0.1278", "a 5-10-15 workout", "room 12 34 56",
          "id=+1234 not a phone", "version 10.0.19045.3803"]:
    neg("phone", t)


# ------------------------------------------------------------------- card
def luhn_complete(prefix, length):
    digits = [int(c) for c in prefix]
    while len(digits) < length - 1:
        digits.append(R.randrange(10))
    for check in range(10):
        d = digits + [check]
        s = 0
        for i, v in enumerate(reversed(d)):
            if i % 2 == 1:
                v *= 2
                if v > 9:
                    v -= 9
            s += v
        if s % 10 == 0:
            return "".join(map(str, d))


def group(num, sizes, sep):
    out, i = [], 0
    for s in sizes:
        out.append(num[i:i + s])
        i += s
    return sep.join(out)


card_kinds = [("4", 16, [4, 4, 4, 4]), ("51", 16, [4, 4, 4, 4]), ("2221", 16, [4, 4, 4, 4]),
              ("37", 15, [4, 6, 5]), ("6011", 16, [4, 4, 4, 4]), ("35", 16, [4, 4, 4, 4]),
              ("4", 13, [4, 4, 5]), ("4", 19, [4, 4, 4, 4, 3]), ("36", 14, [4, 6, 4])]
ctx_card = ["Card number: {}", "charge {} exp 12/27", "my visa is {} thanks", "PAN={}",
            "paid with {}.", "card ({}) declined"]
for i in range(30):
    pre, ln, sizes = card_kinds[i % len(card_kinds)]
    num = luhn_complete(pre, ln)
    sep = R.choice(["", " ", "-", " "])
    pos("card", R.choice(ctx_card).format("{{%s}}" % group(num, sizes, sep) if sep else "{{%s}}" % num))
for i in range(10):
    num = luhn_complete("4", 16)
    bad = num[:-1] + str((int(num[-1]) + 1 + R.randrange(8)) % 10)
    neg("card", "Card number: %s (typo)" % group(bad, [4, 4, 4, 4], R.choice([" ", "-"])))
for t in ["order 1234 5678 9012 3456 placed", "phone 4111 1111", "account 4111111111",
          "id 41111111111111111111111", "ref 0000 0000 0000 0000", "timestamp 1700000000000 ms",
          "pi is 3.14159265358979"]:
    neg("card", t)

# ------------------------------------------------------------------- iban
iban_len = {"DE": 22, "GB": 22, "FR": 27, "ES": 24, "IT": 27, "NL": 18, "BE": 16, "CH": 21,
            "AT": 20, "NO": 15, "PL": 28, "SE": 24, "IE": 22, "PT": 25, "DK": 18, "FI": 18}


def iban_make(cc, n):
    L = iban_len[cc]
    alnum = cc in ("GB", "NL", "IE")
    bban = ""
    if alnum:
        bban = "".join(R.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
    while len(bban) < L - 4:
        bban += str(R.randrange(10))
    rearr = bban + cc + "00"
    num = int("".join(str(int(c, 36)) for c in rearr))
    check = 98 - num % 97
    return cc + "%02d" % check + bban


ctx_iban = ["IBAN: {}", "please transfer to {} by Friday", "Konto {} (Sparkasse)", "beneficiary IBAN {}."]
ccs = list(iban_len)
for i in range(28):
    ib = iban_make(ccs[i % len(ccs)], i)
    if i % 2 == 0:
        ib = " ".join(ib[k:k + 4] for k in range(0, len(ib), 4))
    pos("iban", R.choice(ctx_iban).format("{{%s}}" % ib))
for i in range(8):
    ib = iban_make(ccs[i], i)
    chk = int(ib[2:4])
    bad = ib[:2] + "%02d" % ((chk + 1 + i) % 97 + 2 if (chk + 1 + i) % 97 + 2 != chk else chk + 1) + ib[4:]
    neg("iban", "IBAN: %s (wrong check digits)" % bad)
for t in ["ref DE00 1234 5678 9012 3456 78", "code AB12 CDEF GHIJ", "model XY99 1234 5678",
          "US12345678901234567890 is not a country", "ticket GB123"]:
    neg("iban", t)

# -------------------------------------------------------------------- ssn
ctx_ssn = ["SSN: {}", "social security number {} on file", "ssn={}", "her SSN is {}."]
for i in range(26):
    a = R.choice([R.randrange(1, 666), R.randrange(667, 900)])
    g = R.randrange(1, 100)
    s = R.randrange(1, 10000)
    sep = "-" if i % 5 else " "
    pos("ssn", R.choice(ctx_ssn).format("{{%03d%s%02d%s%04d}}" % (a, sep, g, sep, s)))
for t in ["SSN: 000-12-3456", "SSN: 666-12-3456", "SSN: 912-34-5678", "SSN: 123-00-4567",
          "SSN: 123-45-0000", "number 123456789", "date 2023-12-31", "code 123-45-67890",
          "range 100-20-3000-4", "zip 12345-6789"]:
    neg("ssn", t)

# ------------------------------------------------------------------- ipv4
ctx_ip = ["connect to {} now", "client ip={}", "from {}:8080", "route {}/24 via gw",
          "ping {}.", "host ({}) unreachable"]
for i in range(26):
    ip = "%d.%d.%d.%d" % (R.choice([10, 172, 192, 203, 198, 8, 1, 255]), R.randrange(256),
                          R.randrange(256), R.randrange(1, 255))
    pos("ipv4", R.choice(ctx_ip).format("{{%s}}" % ip))
for t in ["version 1.2.3.4.5 released", "v1.2.3.4 tag", "256.1.1.1 is invalid", "1.2.3 semver",
          "10.0.0 partial", "value 3.14159", "1.2.3.4a5 build", "price 12.50.", "a.b.c.d",
          "300.300.300.300 nope", "1.2.3.04.5"]:
    neg("ipv4", t)

# ------------------------------------------------------------------- ipv6
v6 = ["2001:db8::1", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "fe80::1ff:fe23:4567:890a", "::1",
      "2001:db8:0:0:1:0:0:1", "::ffff:192.0.2.128", "2001:db8::", "ff02::2", "2001:db8:85a3::8a2e:370:7334",
      "fd12:3456:789a:1::1", "2001:DB8::ABCD", "64:ff9b::192.0.2.33", "2001:db8:1::ab9:C0A8:102",
      "1:2:3:4:5:6:7:8", "fe80::", "2001:db8:a::123", "::", "2606:4700:4700::1111",
      "2001:4860:4860::8888", "2a00:1450:4001:82b::200e", "2001:db8:3333:4444:5555:6666:7777:8888",
      "fc00::42", "2001:db8::dead:beef", "::ffff:10.0.0.1"]
for a in v6:
    if a == "::":
        continue
    pos("ipv6", R.choice(ctx_ip).replace("{}:8080", "[{}]:8080").format("{{%s}}" % a))
for t in ["time 10:30:45", "mac 00:1a:2b:3c:4d:5e", "std::vector<int>", "ratio 16:9", "a:b:c",
          "Foo::bar() call", "12:00 noon", "room 1:2:3", "key=value:other", "http://example.com:80/"]:
    neg("ipv6", t)

# ----------------------------------------------------------------- secret
def rnd(n, alpha="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"):
    s = "".join(R.choice(alpha) for _ in range(n))
    return s[:-1] + str(R.randrange(10))


secrets = []
for i in range(5):
    secrets.append("sk-" + rnd(48))
    secrets.append("sk-proj-" + rnd(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))
for i in range(5):
    secrets.append("AKIA" + rnd(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"))
secrets += ["ghp_" + rnd(36), "gho_" + rnd(36), "github_pat_" + rnd(40), "xoxb-" + rnd(24),
            "AIza" + rnd(35), "sk_live_" + rnd(24), "pk_test_" + rnd(24), "ASIA" + rnd(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"]
ctx_sec = ["OPENAI_API_KEY={}", "use key {} for prod", "export KEY=\"{}\"", "token: {}",
           "leaked {} in the log"]
for s in secrets:
    pos("secret", R.choice(ctx_sec).format("{{%s}}" % s))
for i in range(5):
    pos("secret", "Authorization: Bearer {{%s}}" % rnd(32, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-"))
for t in ["sk-learn-is-a-great-library-for-python", "AKIA is a prefix", "AKIAIOSFODNN7EXAMPLEXYZ123",
          "ghp_short", "the bearer of bad news arrived", "Bearer token expired", "task-management-system-v2",
          "skiing is fun", "risk-assessment-framework-2024", "xoxb-", "eyJ is base64 for {\"",
          "Bearer authenticationschemes"]:
    neg("secret", t)

print("# pii_labeled.tsv - generated by pii_gen.py; see there for the format.")
for cls, lab, text in rows:
    assert "\t" not in text and "\n" not in text
    print("%s\t%d\t%s" % (cls, lab, text))
