#!/usr/bin/env python3
"""An independent verifier for the committed vectors, written from docs/PROTOCOL.md only.

It shares no code with protocol/ (TypeScript): Python's json, hashlib and base64, the
`cryptography` package for Ed25519, and its own base58, JCS, RFC 6962, DSSE PAE and PeerId
decoding. Usage: python3 independent_verify.py [vectors dir]; prints one line per vector and
exits 1 if any verdict differs from expected.json.

Limits: its JCS handles the value types the vectors contain (it is not a full RFC 8785
number serialiser), and its SPDX check is the expression grammar without the license list.
"""
import base64
import datetime
import hashlib
import json
import os
import re
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Reject(Exception):
    def __init__(self, code, why=''):
        super().__init__(f'{code}: {why}')
        self.code = code


B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
DIGEST = re.compile(r'^sha256:[0-9a-f]{64}$')
HEX64 = re.compile(r'^[0-9a-f]{64}$')
PLAIN_FILE_NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z')
DATE = re.compile(r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$')
PEER = re.compile(r'^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$')
DID = re.compile(r'^did:key:z6Mk[1-9A-HJ-NP-Za-km-z]{44}$')
VC2 = 'https://www.w3.org/ns/credentials/v2'
IN_TOTO = 'application/vnd.in-toto+json'
CHARTER_TYPE = 'application/vnd.diffusion-coop.charter+json'
CONTRIBUTION = 'https://diffusion-coop.dev/attestation/contribution/v1'
PROVENANCE = 'https://diffusion-coop.dev/attestation/checkpoint-provenance/v2'
AUDIT = 'https://diffusion-coop.dev/attestation/memorization-audit/v1'
RECEIPT = 'https://diffusion-coop.dev/attestation/unlearning-receipt/v1'
DIDKEY = re.compile(r'^did:key:z6Mk[1-9A-HJ-NP-Za-km-z]{44}$')


def b58decode(text):
    n = 0
    for ch in text:
        if ch not in B58:
            raise Reject('BAD_ENCODING', 'not base58')
        n = n * 58 + B58.index(ch)
    body = n.to_bytes((n.bit_length() + 7) // 8, 'big') if n else b''
    return b'\0' * (len(text) - len(text.lstrip('1'))) + body


def b58encode(data):
    n = int.from_bytes(data, 'big')
    out = ''
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return '1' * (len(data) - len(data.lstrip(b'\0'))) + out


def jcs(value):
    if value is None:
        return 'null'
    if value is True:
        return 'true'
    if value is False:
        return 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return '[' + ','.join(jcs(v) for v in value) + ']'
    keys = sorted(value, key=lambda k: k.encode('utf-16-be'))
    return '{' + ','.join(json.dumps(k, ensure_ascii=False) + ':' + jcs(value[k]) for k in keys) + '}'


def sha256(data):
    return hashlib.sha256(data).digest()


def digest(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def parse_canonical(data, limit):
    if len(data) > limit:
        raise Reject('TOO_LARGE')
    try:
        text = data.decode('utf-8')
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise Reject('INVALID_JSON')
    if jcs(value) != text:
        raise Reject('NOT_CANONICAL')
    return value


def closed(obj, required, optional=()):
    if not isinstance(obj, dict) or not set(required) <= set(obj) or not set(obj) <= set(required) | set(optional):
        raise Reject('SCHEMA', f'members {sorted(obj) if isinstance(obj, dict) else obj}')


def need(condition, code='SCHEMA', why=''):
    if not condition:
        raise Reject(code, why)


def ed25519_verify(public_key, message, signature):
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        raise Reject('BAD_SIGNATURE')


def did_key(did):
    need(did.startswith('did:key:z'), 'BAD_KEY')
    raw = b58decode(did[len('did:key:z'):])
    need(len(raw) == 34 and raw[:2] == b'\xed\x01', 'BAD_KEY')
    return raw[2:]


def peer_id_key(peer):
    raw = b58decode(peer)
    need(len(raw) == 38 and raw[:6] == bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]), 'BAD_KEY')
    return raw[6:]


def spdx_terms(expression):
    """Returns the expression as nested ('and'|'or', l, r) / term tuples; INVALID_LICENSE if malformed."""
    tokens = re.findall(r'\(|\)|[^\s()]+', expression)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else None

    def term():
        nonlocal pos
        if peek() == '(':
            pos += 1
            node = expr()
            need(peek() == ')', 'INVALID_LICENSE')
            pos += 1
            return node
        tok = peek()
        need(tok is not None and re.fullmatch(r'[A-Za-z0-9.\-]+\+?', tok) and tok not in ('AND', 'OR', 'WITH'), 'INVALID_LICENSE')
        pos += 1
        if peek() == 'WITH':
            pos += 1
            exc = peek()
            need(exc is not None and re.fullmatch(r'[A-Za-z0-9.\-]+', exc), 'INVALID_LICENSE')
            pos += 1
            tok = f'{tok} WITH {exc}'
        return tok

    def expr():
        nonlocal pos
        node = term()
        while peek() in ('AND', 'OR'):
            op = peek().lower()
            pos += 1
            node = (op, node, term())
        return node

    node = expr()
    need(pos == len(tokens), 'INVALID_LICENSE')
    return node


def satisfiable(node, accepted):
    if isinstance(node, str):
        return node in accepted
    op, left, right = node
    if op == 'or':
        return satisfiable(left, accepted) or satisfiable(right, accepted)
    return satisfiable(left, accepted) and satisfiable(right, accepted)


def merkle_root(digests):
    nodes = [sha256(b'\0' + bytes.fromhex(d[7:])) for d in digests]

    def mth(lo, hi):
        if hi - lo == 1:
            return nodes[lo]
        k = 1
        while k * 2 < hi - lo:
            k *= 2
        return sha256(b'\x01' + mth(lo, lo + k) + mth(lo + k, hi))

    return 'sha256:' + (sha256(b'') if not nodes else mth(0, len(nodes))).hex()


def timestamp(text):
    need(isinstance(text, str) and DATE.match(text))
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc)


def check_attribution(a):
    closed(a, ['name'], ['uri', 'text'])


def verify_proof(doc):
    proof = doc['proof']
    need(proof['@context'] == doc['@context'])
    vm = proof['verificationMethod']
    need(isinstance(vm, str) and '#' in vm, 'BAD_KEY')
    did, fragment = vm.split('#', 1)
    key = did_key(did)
    need(fragment == did[len('did:key:'):], 'BAD_KEY')
    need(did == doc['issuer'], 'ISSUER_MISMATCH')
    value = proof['proofValue']
    need(isinstance(value, str) and value.startswith('z'), 'BAD_ENCODING')
    signature = b58decode(value[1:])
    need('z' + b58encode(signature) == value, 'BAD_ENCODING')
    need(len(signature) == 64, 'BAD_SIGNATURE')
    config = {k: v for k, v in proof.items() if k != 'proofValue'}
    unsecured = {k: v for k, v in doc.items() if k != 'proof'}
    ed25519_verify(key, sha256(jcs(config).encode()) + sha256(jcs(unsecured).encode()), signature)


def check_vc_shape(doc, type_name, subject_members, subject_optional):
    need(isinstance(doc.get('proof'), dict))
    if doc['proof'].get('type') != 'DataIntegrityProof' or doc['proof'].get('cryptosuite') != 'eddsa-jcs-2022':
        raise Reject('UNSUPPORTED_CRYPTOSUITE')
    closed(doc, ['@context', 'type', 'issuer', 'validFrom', 'credentialSubject', 'proof'], ['validUntil'])
    need(doc['@context'] == [VC2] and doc['type'] == ['VerifiableCredential', type_name])
    need(isinstance(doc['issuer'], str) and DID.match(doc['issuer']))
    timestamp(doc['validFrom'])
    if 'validUntil' in doc:
        timestamp(doc['validUntil'])
    closed(doc['proof'], ['type', 'cryptosuite', 'created', 'verificationMethod', 'proofPurpose', '@context', 'proofValue'])
    need(doc['proof']['proofPurpose'] == 'assertionMethod')
    timestamp(doc['proof']['created'])
    closed(doc['credentialSubject'], subject_members, subject_optional)


def verify_revocation(data):
    doc = parse_canonical(data, 16 * 1024 * 1024)
    need(isinstance(doc, dict) and 'ConsentRevocation' in (doc.get('type') or []), 'UNKNOWN_TYPE')
    check_vc_shape(doc, 'ConsentRevocation', ['type', 'manifest', 'items'], ['reason'])
    subject = doc['credentialSubject']
    need(subject['type'] == 'ConsentRevocation' and DIGEST.match(subject['manifest']))
    items = subject['items']
    need(items == 'all' or (isinstance(items, list) and items == sorted(set(items)) and all(DIGEST.match(i) for i in items)))
    verify_proof(doc)
    return {'digest': digest(data), 'issuer': doc['issuer'], 'manifest': subject['manifest'], 'items': items}


def verify_manifest(data, now, accepted=None, revocations=()):
    doc = parse_canonical(data, 32 * 1024 * 1024)
    need(isinstance(doc, dict) and 'ConsentManifest' in (doc.get('type') or []), 'UNKNOWN_TYPE')
    check_vc_shape(doc, 'ConsentManifest', ['type', 'custodian', 'license', 'attribution', 'usage', 'scope', 'itemCount', 'merkleRoot', 'items'], [])
    s = doc['credentialSubject']
    need(s['type'] == 'TrainingConsent' and PEER.match(s['custodian']) and DIGEST.match(s['merkleRoot']))
    check_attribution(s['attribution'])
    closed(s['usage'], ['cawg.ai_generative_training'], ['cawg.ai_training', 'cawg.ai_inference', 'cawg.data_mining'])
    for entry in s['usage'].values():
        closed(entry, ['use'], ['constraint_info'])
        need(entry['use'] in ('allowed', 'notAllowed', 'constrained'))
    closed(s['scope'], ['commercialUse', 'weightRedistribution'])
    for item in s['items']:
        closed(item, ['digest', 'mediaType', 'byteLength'], ['license', 'attribution'])
        need(DIGEST.match(item['digest']) and item['mediaType'] in ('image/gif', 'image/jpeg', 'image/png', 'image/webp'))
    licenses = [s['license']] + [i['license'] for i in s['items'] if 'license' in i]
    trees = [spdx_terms(lic) for lic in licenses]
    verify_proof(doc)
    digests = [i['digest'] for i in s['items']]
    need(digests == sorted(set(digests)), 'MERKLE_MISMATCH')
    need(s['itemCount'] == len(digests), 'MERKLE_MISMATCH')
    need(merkle_root(digests) == s['merkleRoot'], 'MERKLE_MISMATCH')
    need(timestamp(doc['validFrom']) <= now, 'NOT_YET_VALID')
    if 'validUntil' in doc:
        need(now < timestamp(doc['validUntil']), 'EXPIRED')
    need(s['usage']['cawg.ai_generative_training']['use'] == 'allowed', 'USAGE_NOT_ALLOWED')
    if accepted is not None:
        need(all(satisfiable(t, set(accepted)) for t in trees), 'LICENSE_NOT_ACCEPTED')
    revoked = set()
    for r in revocations:
        if r['manifest'] == digest(data):
            need(r['issuer'] == doc['issuer'], 'ISSUER_MISMATCH')
            revoked |= set(digests) if r['items'] == 'all' else set(r['items']) & set(digests)
    need(not revocations or not set(digests) <= revoked, 'REVOKED')


def strict_b64(text):
    need(isinstance(text, str) and len(text) % 4 == 0, 'BAD_ENCODING')
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:
        raise Reject('BAD_ENCODING')
    need(base64.b64encode(data).decode() == text, 'BAD_ENCODING')
    return data


def open_envelope(data, limit):
    env = parse_canonical(data, limit)
    closed(env, ['payload', 'payloadType', 'signatures'])
    need(isinstance(env['payload'], str) and isinstance(env['payloadType'], str) and 1 <= len(env['payloadType']) <= 256)
    need(isinstance(env['signatures'], list) and 1 <= len(env['signatures']) <= 64)
    for s in env['signatures']:
        closed(s, ['keyid', 'sig'])
        need(isinstance(s['keyid'], str) and PEER.match(s['keyid']) and isinstance(s['sig'], str) and len(s['sig']) == 88)
    body = strict_b64(env['payload'])
    type_bytes = env['payloadType'].encode()
    pae = b'DSSEv1 %d %s %d %s' % (len(type_bytes), type_bytes, len(body), body)
    signers = []
    for i, s in enumerate(env['signatures']):
        need(i == 0 or env['signatures'][i - 1]['keyid'] < s['keyid'])
        key = peer_id_key(s['keyid'])
        ed25519_verify(key, pae, strict_b64(s['sig']))
        signers.append(s['keyid'])
    return env['payloadType'], body, signers


def read_statement(payload_type, body, predicate_type, limit):
    need(payload_type == IN_TOTO, 'UNKNOWN_TYPE')
    st = parse_canonical(body, limit)
    need(isinstance(st, dict) and st.get('_type') == 'https://in-toto.io/Statement/v1', 'UNKNOWN_TYPE')
    need(st.get('predicateType') == predicate_type, 'UNKNOWN_TYPE')
    closed(st, ['_type', 'subject', 'predicateType', 'predicate'])
    need(isinstance(st['subject'], list) and len(st['subject']) >= 1)
    for s in st['subject']:
        closed(s, ['name', 'digest'])
        closed(s['digest'], ['sha256'])
        need(HEX64.match(s['digest']['sha256']))
    return st


def verify_charter(data):
    payload_type, body, signers = open_envelope(data, 1024 * 1024)
    need(payload_type == CHARTER_TYPE, 'UNKNOWN_TYPE')
    c = parse_canonical(body, 1024 * 1024)
    closed(c, ['model', 'rounds', 'publishers', 'threshold', 'admission', 'acceptedLicenses', 'intendedUse', 'phases', 'createdAt'], ['name', 'audit', 'onRevocation'])
    closed(c['intendedUse'], ['commercialUse', 'weightRedistribution'])
    need(all(isinstance(v, bool) for v in c['intendedUse'].values()))
    need(c.get('onRevocation', 'exclude') in ('exclude', 'rollback'))
    if 'audit' in c:
        closed(c['audit'], ['every', 'samplesPerClass'])
        need(all(type(c['audit'][k]) is int and c['audit'][k] >= 1 for k in ('every', 'samplesPerClass')))
    closed(c['rounds'], ['innerSteps', 'outerLr', 'outerMomentum', 'aggregator', 'compression', 'quorum', 'deadlineSeconds'], ['outerSchedule'])
    if 'outerSchedule' in c['rounds']:
        # PROTOCOL.md: {"warmupRounds": 0..100000, "finalLrFraction": (0, 1]}
        s = c['rounds']['outerSchedule']
        closed(s, ['warmupRounds', 'finalLrFraction'])
        w, f = s['warmupRounds'], s['finalLrFraction']
        need(type(w) is int and 0 <= w <= 100000)
        need(type(f) in (int, float) and 0 < f <= 1)
    closed(c['phases'], ['autoencoder', 'unet'])
    publishers = c['publishers']
    need(isinstance(publishers, list) and publishers == sorted(set(publishers)) and all(PEER.match(p) for p in publishers))
    need(isinstance(c['threshold'], int) and 1 <= c['threshold'] <= len(publishers))
    need(c['acceptedLicenses'] == sorted(set(c['acceptedLicenses'])))
    timestamp(c['createdAt'])
    for lic in c['acceptedLicenses']:
        need(isinstance(spdx_terms(lic), str), 'INVALID_LICENSE')
    need(set(signers) <= set(publishers), 'ISSUER_MISMATCH')
    need(len(signers) >= c['threshold'], 'THRESHOLD_NOT_MET')
    return {'coop': digest(body), 'publishers': publishers, 'threshold': c['threshold']}


CODEC_KINDS = ('none', 'int8', 'topk')


def verify_contribution(data):
    payload_type, body, signers = open_envelope(data, 256 * 1024)
    st = read_statement(payload_type, body, CONTRIBUTION, 256 * 1024)
    p = st['predicate']
    closed(p, ['coop', 'round', 'phase', 'baseCheckpoint', 'manifests', 'itemsRoot', 'itemCount', 'samples', 'localSteps', 'loss', 'codec'])
    need(len(st['subject']) == 1 and p['manifests'] == sorted(set(p['manifests'])) and p['codec'].get('kind') in CODEC_KINDS)
    need(len(signers) == 1)
    need(st['subject'][0]['name'] == 'delta.safetensors')


def verify_provenance(data, charter):
    payload_type, body, signers = open_envelope(data, 8 * 1024 * 1024)
    st = read_statement(payload_type, body, PROVENANCE, 8 * 1024 * 1024)
    p = st['predicate']
    closed(p, ['coop', 'round', 'phase', 'parent', 'contributions', 'manifests', 'exclusions', 'components', 'license', 'attribution'])
    x = p['exclusions']
    closed(x, ['revocations', 'expiredManifests', 'items', 'itemsRoot', 'details'])
    counts = [x['revocations'], x['expiredManifests'], x['items']]
    need(all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts))
    # No details document exactly when nothing is excluded; the root of no items is sha256 of ''.
    need((x['details'] is None) == (counts == [0, 0, 0]))
    need(x['items'] > 0 or x['itemsRoot'] == digest(b''))
    for c in p['contributions']:
        closed(c, ['statement', 'contributor', 'delta', 'manifests'])
    union = sorted({m for c in p['contributions'] for m in c['manifests']})
    need(p['manifests'] == union)
    names = [s['name'] for s in st['subject']]
    need(all(isinstance(n, str) and PLAIN_FILE_NAME.match(n) for n in names))
    need(names == sorted(set(names)))
    for a in p['attribution']:
        check_attribution(a)
    spdx_terms(p['license'])
    need(set(signers) <= set(charter['publishers']), 'ISSUER_MISMATCH')
    need(len(signers) >= charter['threshold'], 'THRESHOLD_NOT_MET')
    need(p['coop'] == charter['coop'])


def verify_audit(data):
    payload_type, body, signers = open_envelope(data, 16 * 1024 * 1024)
    st = read_statement(payload_type, body, AUDIT, 16 * 1024 * 1024)
    need(len(signers) == 1)
    names = [s['name'] for s in st['subject']]
    need(names == sorted(set(names)))
    p = st['predicate']
    closed(p, ['checkpoint', 'coop', 'round', 'method', 'thresholds', 'images', 'imagesRoot', 'flagged', 'holders', 'report', 'createdAt'])
    for key in ('checkpoint', 'coop'):
        need(p[key] is None or DIGEST.match(p[key]))
    need(p['round'] is None or (type(p['round']) is int and p['round'] >= 0))
    m = p['method']
    closed(m, ['sampler', 'classes', 'samplesPerClass', 'samples', 'imageSize', 'pixelMetric', 'features'])
    closed(m['sampler'], ['kind', 'steps', 'guidance', 'seed'])
    closed(m['features'], ['extractor', 'dims'])
    need(m['sampler']['kind'] == 'ddim' and m['pixelMetric'] == 'normalised-l2')
    t = p['thresholds']
    closed(t, ['l2', 'ratio'])
    need(t['l2'] > 0 and 0 < t['ratio'] <= 1)
    need(DIGEST.match(p['imagesRoot']) and DIGEST.match(p['report']))
    timestamp(p['createdAt'])
    flagged = p['flagged']
    need(all(DIGEST.match(f) for f in flagged) and flagged == sorted(set(flagged)))
    need(type(p['images']) is int and len(flagged) <= p['images'])
    holders = p['holders']
    for h in holders:
        closed(h, ['issuer', 'name', 'images', 'flagged', 'closestL2'])
        need(h['issuer'] is None or (isinstance(h['issuer'], str) and DIDKEY.match(h['issuer'])))
        need(type(h['images']) is int and type(h['flagged']) is int and 0 <= h['flagged'] <= h['images'])
    keys = [h['issuer'] or '' for h in holders]
    need(keys == sorted(set(keys)))
    need(sum(h['images'] for h in holders) == p['images'] and sum(h['flagged'] for h in holders) == len(flagged))


def verify_receipt(data, charter):
    payload_type, body, signers = open_envelope(data, 16 * 1024 * 1024)
    st = read_statement(payload_type, body, RECEIPT, 16 * 1024 * 1024)
    names = [s['name'] for s in st['subject']]
    need(names == sorted(set(names)))
    p = st['predicate']
    closed(p, ['coop', 'phase', 'round', 'newBase', 'superseded', 'revocations', 'revokedItems', 'createdAt'])
    need(DIGEST.match(p['coop']) and p['phase'] in ('autoencoder', 'unet'))
    need(type(p['round']) is int and p['round'] >= 1)
    base = p['newBase']
    closed(base, ['checkpoint', 'provenance', 'round'])
    need(DIGEST.match(base['checkpoint']) and DIGEST.match(base['provenance']))
    need(type(base['round']) is int and 0 <= base['round'] < p['round'])
    last = base['round']
    for s in p['superseded']:
        closed(s, ['provenance', 'round'])
        need(DIGEST.match(s['provenance']) and type(s['round']) is int and last < s['round'] < p['round'])
        last = s['round']
    need(len({s['provenance'] for s in p['superseded']}) == len(p['superseded']))
    for key in ('revocations', 'revokedItems'):
        need(len(p[key]) >= 1 and all(DIGEST.match(d) for d in p[key]) and p[key] == sorted(set(p[key])))
    timestamp(p['createdAt'])
    need(set(signers) <= set(charter['publishers']), 'ISSUER_MISMATCH')
    need(len(signers) >= charter['threshold'], 'THRESHOLD_NOT_MET')
    need(p['coop'] == charter['coop'])


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    expected = json.load(open(os.path.join(folder, 'expected.json')))
    now = timestamp(expected['verifyAt'])
    read = lambda name: open(os.path.join(folder, name), 'rb').read()
    failures = 0
    for v in expected['vectors']:
        options = v.get('options', {})
        try:
            data = read(v['file'])
            kind = v['kind']
            if kind == 'manifest':
                verify_manifest(data, now, options.get('acceptedLicenses'), [verify_revocation(read(r)) for r in options.get('revocations', [])])
            elif kind == 'revocation':
                verify_revocation(data)
            elif kind == 'charter':
                verify_charter(data)
            elif kind == 'contribution':
                verify_contribution(data)
            elif kind == 'audit':
                verify_audit(data)
            elif kind == 'receipt':
                verify_receipt(data, verify_charter(read(options.get('charter', 'charter.valid.json'))))
            else:
                verify_provenance(data, verify_charter(read(options.get('charter', 'charter.valid.json'))))
            verdict = 'VALID'
        except Reject as rejection:
            verdict = rejection.code
        except (KeyError, TypeError, AttributeError) as error:
            verdict = 'SCHEMA'
        ok = verdict == v['expect']
        failures += 0 if ok else 1
        print(f"{'ok  ' if ok else 'FAIL'} {v['file']}: expected {v['expect']}, got {verdict}")
    print(f'{len(expected["vectors"]) - failures}/{len(expected["vectors"])} vectors agree')
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()
