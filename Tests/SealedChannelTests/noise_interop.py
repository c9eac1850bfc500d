"""An independent Noise implementation (the `noiseprotocol` package) that cross-checks cmk's.

Reads a JSON list of cases from standard input, each in the cacophony/snow test-vector format without the
ciphertexts: protocol_name, init_prologue, resp_prologue, init_static, resp_static, init_ephemeral, resp_ephemeral
(hex private keys; statics only when the pattern has them), messages (each with a hex payload and an optional
"rekey": true, meaning both sides call Rekey() on that message's direction just before it). Runs both parties with
noiseprotocol and prints the same cases with every message's ciphertext and the handshake hash filled in.

A case may also carry "cmk_records": {channel_id, rekey_after_records, rekey_after_bytes, records: [{from, type,
body}]}: frames of cmk's record layer built here from docs/channels.md (not from cmk's code) over the transport
keys of the handshake, so cmk's record decoder is checked against an independent writer.
"""

import json
import struct
import sys
import warnings

from noise.connection import Keypair, NoiseConnection

RECORD_LABEL = b"cmk/channel/record/v2\x00"
ROLE = {"initiator": b"I", "responder": b"R"}


def party(case, initiator):
    conn = NoiseConnection.from_name(case["protocol_name"].encode())
    if initiator:
        conn.set_as_initiator()
    else:
        conn.set_as_responder()
    side = "init" if initiator else "resp"
    conn.set_prologue(bytes.fromhex(case[side + "_prologue"]))
    if case.get(side + "_static"):
        conn.set_keypair_from_private_bytes(Keypair.STATIC, bytes.fromhex(case[side + "_static"]))
    conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, bytes.fromhex(case[side + "_ephemeral"]))
    conn.start_handshake()
    return conn


def run(case):
    initiator = party(case, True)
    responder = party(case, False)
    handshake_length = {"XX": 3, "NN": 2}[case["protocol_name"].split("_")[1]]
    out = []
    for index, message in enumerate(case["messages"]):
        payload = bytes.fromhex(message["payload"])
        from_initiator = index % 2 == 0 if index < handshake_length else message.get("from", "initiator") == "initiator"
        sender, receiver = (initiator, responder) if from_initiator else (responder, initiator)
        if index < handshake_length:
            ciphertext = bytes(sender.write_message(payload))
            received = bytes(receiver.read_message(ciphertext))
        else:
            if message.get("rekey"):
                sender.noise_protocol.cipher_state_encrypt.rekey()
                receiver.noise_protocol.cipher_state_decrypt.rekey()
            ciphertext = sender.encrypt(payload)
            received = receiver.decrypt(ciphertext)
        assert received == payload, "the payload did not round-trip"
        out.append(dict(message, ciphertext=ciphertext.hex()))
    assert initiator.get_handshake_hash() == responder.get_handshake_hash()
    result = dict(case, messages=out, handshake_hash=initiator.get_handshake_hash().hex())
    if "cmk_records" in case:
        result["cmk_records"] = records(case["cmk_records"], initiator, responder)
    return result


def records(spec, initiator, responder):
    """cmk records per docs/channels.md: frame = u32be len || type || AEAD(k, n, ad || type, body)."""
    channel_id = spec["channel_id"].encode()
    state = {}
    for role, conn in (("initiator", initiator), ("responder", responder)):
        state[role] = {"cipher": conn.noise_protocol.cipher_state_encrypt, "records": 0, "bytes": 0}
    frames = []
    for record in spec["records"]:
        direction = state[record["from"]]
        body = bytes.fromhex(record["body"])
        length = 1 + len(body) + 16
        counter = direction["cipher"].n
        ad = (RECORD_LABEL + bytes([len(channel_id)]) + channel_id + ROLE[record["from"]]
              + struct.pack(">QIB", counter, length, record["type"]))
        ciphertext = direction["cipher"].encrypt_with_ad(ad, body)
        assert 1 + len(ciphertext) == length
        frames.append(dict(record, frame=(struct.pack(">IB", length, record["type"]) + ciphertext).hex()))
        direction["records"] += 1
        direction["bytes"] += length
        if direction["records"] >= spec["rekey_after_records"] or direction["bytes"] >= spec["rekey_after_bytes"]:
            direction["cipher"].rekey()
            direction["records"] = 0
            direction["bytes"] = 0
    return dict(spec, records=frames)


def peer(protocol_name, role, prologue_hex):
    """An interactive peer with fresh random keys: one hex message per line in, one per line out.

    It runs the handshake (its payloads say who it is), then echoes every transport message back as "echo:" plus
    the message, and on the line "end" prints its handshake hash and the peer's static key and exits.
    """
    conn = NoiseConnection.from_name(protocol_name.encode())
    conn.set_as_initiator() if role == "initiator" else conn.set_as_responder()
    conn.set_prologue(bytes.fromhex(prologue_hex))
    if "_XX_" in protocol_name:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        from cryptography.hazmat.primitives import serialization
        raw = X25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
        conn.set_keypair_from_private_bytes(Keypair.STATIC, raw)
    conn.start_handshake()

    def send(data):
        print(data.hex(), flush=True)

    def receive():
        return sys.stdin.readline().strip()

    turn_is_mine = role == "initiator"
    while not conn.handshake_finished:
        if turn_is_mine:
            send(conn.write_message(("python " + role).encode()))
        else:
            payload = conn.read_message(bytes.fromhex(receive()))
            assert payload in (b"", b"cmk initiator", b"cmk responder"), payload
        turn_is_mine = not turn_is_mine
    while True:
        line = receive()
        if line in ("end", ""):
            break
        send(conn.encrypt(b"echo:" + conn.decrypt(bytes.fromhex(line))))
    print(conn.get_handshake_hash().hex(), flush=True)


def main():
    warnings.filterwarnings("ignore", message="One of ephemeral keypairs")
    if len(sys.argv) == 5 and sys.argv[1] == "peer":
        peer(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    cases = json.load(sys.stdin)
    json.dump([run(case) for case in cases], sys.stdout)


if __name__ == "__main__":
    main()
