#!/usr/bin/env python3
"""Generates sample-data/web/: a small crawl-like corpus for the text steps (seed 7).

    python3 sample-data/generate_web.py

Writes `web/crawl-0000{0,1}.jsonl.gz` (one JSON object a line: id, url, text, lang) and
`web/truth.jsonl`, which says what each document was planted as:

* `prose` in English, German, French, Spanish and Russian, built from a few hundred
  common words of each language (real words, so language identification has something
  to go on; made-up sentences, so there is nothing to license);
* `junk` that the published quality heuristics exist to drop: navigation boilerplate,
  symbol noise, one line repeated, lorem ipsum, JavaScript warnings, cookie/policy
  lines, code with curly braces, documents too short to be text;
* `exact` duplicates of an earlier document (same text, new id and url);
* `near` duplicates: an earlier English document with a few words substituted,
  inserted or deleted; `truth.jsonl` gives the word 5-gram Jaccard similarity to the
  original (the MinHash step's target measure);
* `pii`: prose with e-mail addresses, IP addresses and phone numbers in it.

Deterministic: the same bytes on every run (gzip mtime 0).
"""
import gzip
import json
import os
import random
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "web")

VOCAB = {
    "en": """the of and to in is that for it as was with be by on not he this are or his from at which but have
an they you were her she there been one all we their has would when if so no will more time people year
way day man thing woman life child world school state family student group country problem hand part place
case week company system program question work government number night point home water room mother area
money story fact month lot right study book eye job word business issue side kind head house service friend
father power hour game line end member law car city community name president team minute idea kid body
information back parent face others level office door health person art war history party result change
morning reason research girl guy moment air teacher force education river mountain garden kitchen window
train station market village letter paper music color picture street summer winter evening answer table
little small large great good new old long young important different public bad same able early late
happy quiet bright dark strong simple clear open full free real whole sure better best certain""".split(),
    "de": """der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an werden
aus er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war haben nur oder aber
vor zur bis mehr durch man sein wurde sei Jahr Zeit Haus Stadt Land Kind Frau Mann Tag Welt Leben Arbeit
Schule Familie Wasser Freund Geschichte Straße Garten Morgen Abend Buch Frage Antwort Musik Sommer Winter
groß klein neu alt gut schön lang kurz jung wichtig schnell langsam hell dunkel ruhig heute morgen immer
wieder gemeinsam zwischen während gegen ohne unter weil wenn dann schon sehr viel wenig hier dort""".split(),
    "fr": """le la les de des du un une et est en que qui dans pour pas sur au avec il elle ce se ne plus par
son sa ses mais comme on tout nous vous leur été être avoir fait faire dit aussi bien sans peut temps année
jour homme femme enfant monde vie maison ville pays travail école famille eau ami histoire rue jardin matin
soir livre question réponse musique été hiver grand petit nouveau vieux bon beau long court jeune important
rapide lent clair sombre calme aujourd'hui demain toujours encore ensemble entre pendant contre sous parce
quand alors déjà très beaucoup peu ici là-bas chemin rivière montagne marché village lettre""".split(),
    "es": """el la los las de del un una y es en que por para con no se su sus al lo como más pero sus le ya
o este sí porque esta entre cuando muy sin sobre también me hasta hay donde quien desde todo nos durante
todos uno les ni contra otros ese eso ante ellos tiempo año día hombre mujer niño mundo vida casa ciudad
país trabajo escuela familia agua amigo historia calle jardín mañana noche libro pregunta respuesta música
verano invierno grande pequeño nuevo viejo bueno bonito largo corto joven importante rápido lento claro
oscuro tranquilo hoy siempre otra vez juntos río montaña mercado pueblo carta camino""".split(),
    "ru": """и в не на я быть он с что а по это она этот к но они мы как из у который то за свой весь год от
так о для ты же все тот мочь вы человек такой его сказать только или ещё бы себя один как уже до время
если сам когда другой вот говорить наш мой знать стать при чтобы дело жизнь кто первый очень два день её
новый рука даже во со раз где там под можно ну какой после их работа без самый потом надо хотеть ли слово
идти большой должен место иметь ничто город дом страна вода друг история улица сад утро вечер книга вопрос
ответ музыка лето зима маленький старый хороший красивый длинный молодой важный быстро медленно""".split(),
}

TERMINAL = {"en": ".?!", "de": ".?!", "fr": ".?!", "es": ".?!", "ru": ".?!"}


def zipf_choice(rng, words):
    # Zipf-like weights: common words much more often, as in real text.
    i = min(int(rng.paretovariate(0.7)) - 1, len(words) - 1)
    return words[i] if rng.random() < 0.3 else rng.choice(words)


def sentence(rng, lang):
    words = [zipf_choice(rng, VOCAB[lang]) for _ in range(rng.randint(7, 20))]
    words[0] = words[0][:1].upper() + words[0][1:]
    if rng.random() < 0.25:
        words[rng.randrange(1, len(words))] += ","
    if lang == "es" and rng.random() < 0.2:
        return "¿" + " ".join(words) + "?"
    return " ".join(words) + rng.choice(".....?!")


def prose(rng, lang, min_words=60):
    paras = []
    n = 0
    while n < min_words or rng.random() < 0.5:
        sents = [sentence(rng, lang) for _ in range(rng.randint(2, 6))]
        n += sum(len(s.split()) for s in sents)
        paras.append(" ".join(sents))
        if len(paras) > 12:
            break
    if rng.random() < 0.3:
        title = " ".join(zipf_choice(rng, VOCAB[lang]) for _ in range(rng.randint(3, 7))).title()
        paras.insert(0, title)
    return "\n\n".join(paras)


def junk(rng):
    kind = rng.choice(["nav", "symbols", "repeat", "lorem", "javascript", "policy", "code", "short"])
    if kind == "nav":
        items = ["Home", "About", "Contact", "Login", "Sign up", "Blog", "Shop", "FAQ", "Careers", "Press"]
        text = "\n".join(" | ".join(rng.sample(items, 5)) for _ in range(rng.randint(3, 20)))
    elif kind == "symbols":
        text = " ".join("".join(rng.choice("#*@$%^&~<>[]{}|\\/=+-_") for _ in range(rng.randint(2, 9))) for _ in range(rng.randint(40, 200)))
    elif kind == "repeat":
        line = sentence(rng, "en")
        text = "\n".join([line] * rng.randint(20, 120))
    elif kind == "lorem":
        text = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. " * rng.randint(3, 10)).strip()
    elif kind == "javascript":
        text = prose(rng, "en") + "\n\nPlease enable JavaScript to view this page.\nThis site requires Javascript to work properly."
    elif kind == "policy":
        text = prose(rng, "en") + "\n\nWe use cookies to improve your experience. By using this site you agree to our privacy policy and terms of use."
    elif kind == "code":
        text = "\n".join(f"function f{i}(x) {{ return x * {i}; }}" for i in range(rng.randint(10, 60)))
    else:
        text = sentence(rng, "en")
    return kind, text


def with_pii(rng, text):
    users = ["jane.doe", "m.mueller", "contact", "info", "support+web", "a_smith"]
    hosts = ["example.com", "mail.example.org", "example.co.uk", "beispiel.de"]
    extras = [
        f"Write to {rng.choice(users)}@{rng.choice(hosts)} for details.",
        f"The server at {rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)} was down.",
        f"Our IPv6 gateway is 2001:db8:{rng.randint(1, 0xffff):x}::{rng.randint(1, 0xffff):x}.",
        f"Call us at +1 ({rng.randint(200, 999)}) 555-{rng.randint(0, 9999):04d} today.",
        f"Phone 0{rng.randint(20, 99)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)} after six.",
    ]
    picks = rng.sample(extras, rng.randint(1, 3))
    paras = text.split("\n\n")
    for p in picks:
        i = rng.randrange(len(paras))
        paras[i] = paras[i] + " " + p
    return "\n\n".join(paras)


def shingles(words, n=5):
    return {tuple(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


def jaccard(a, b):
    sa, sb = shingles(a.split()), shingles(b.split())
    return len(sa & sb) / len(sa | sb)


def near_copy(rng, text):
    words = text.split(" ")
    edits = rng.randint(1, max(1, len(words) // 60))
    for _ in range(edits):
        op = rng.random()
        i = rng.randrange(len(words))
        if op < 0.5:
            words[i] = zipf_choice(rng, VOCAB["en"])
        elif op < 0.75:
            words.insert(i, zipf_choice(rng, VOCAB["en"]))
        elif len(words) > 10:
            del words[i]
    return " ".join(words)


def main():
    rng = random.Random(7)
    os.makedirs(OUT, exist_ok=True)
    docs, truth = [], []
    english_long = []
    n_docs = 2400
    for i in range(n_docs):
        r = rng.random()
        did = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        url = f"https://{rng.choice(['news', 'blog', 'shop', 'wiki'])}.example.{rng.choice(['com', 'org', 'net', 'de', 'fr'])}/{i}"
        if r < 0.10:
            kind, text = junk(rng)
            rec = {"kind": "junk", "junk": kind}
            lang = "en"
        elif r < 0.13 and docs:
            j = rng.randrange(len(docs))
            text, lang = docs[j]["text"], docs[j]["lang"]
            rec = {"kind": "exact", "of": docs[j]["id"]}
        elif r < 0.19 and english_long:
            j = rng.choice(english_long)
            text = near_copy(rng, docs[j]["text"])
            lang = "en"
            rec = {"kind": "near", "of": docs[j]["id"], "jaccard": round(jaccard(docs[j]["text"], text), 4)}
        else:
            lang = rng.choices(["en", "de", "fr", "es", "ru"], [0.7, 0.08, 0.08, 0.08, 0.06])[0]
            text = prose(rng, lang)
            rec = {"kind": "prose"}
            if lang == "en" and rng.random() < 0.06:
                text = with_pii(rng, text)
                rec = {"kind": "pii"}
            elif lang == "en" and len(text.split()) >= 150:
                english_long.append(len(docs))
        docs.append({"id": did, "url": url, "text": text, "lang": lang})
        truth.append({"id": did, "lang": lang, **rec})
    half = len(docs) // 2
    for part, chunk in enumerate([docs[:half], docs[half:]]):
        path = os.path.join(OUT, f"crawl-{part:05d}.jsonl.gz")
        with open(path, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as gz:
                for d in chunk:
                    gz.write((json.dumps(d, ensure_ascii=False) + "\n").encode("utf-8"))
    with open(os.path.join(OUT, "truth.jsonl"), "w", encoding="utf-8") as f:
        for t in truth:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    kinds = {}
    for t in truth:
        kinds[t["kind"]] = kinds.get(t["kind"], 0) + 1
    print(f"wrote {len(docs)} documents to {OUT}: {kinds}")


if __name__ == "__main__":
    main()
