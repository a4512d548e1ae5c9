#!/usr/bin/env python3
"""Capture real MQTT bytes between mosquitto_pub/mosquitto_sub and mosquitto.

Starts a private mosquitto on a free loopback port, puts a logging TCP relay
in front of it, runs each scenario below through the relay and writes one
hex file per scenario into test/codec/data/ (or the directory given as the
first argument). Every file holds the client's bytes ("c" lines) and the
broker's bytes ("s" lines) in arrival order; test_codec_vectors decodes both
directions and re-encodes every packet.

Only loopback is used; the broker is stopped by PID at the end.
Re-running it regenerates the data (client ids and ports are fixed by the
scenarios so the bytes are stable, apart from what the broker chooses).
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "data")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Relay:
    """Accepts connections and relays them to the broker, logging chunks."""

    def __init__(self, broker_port):
        self.broker_port = broker_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.log = []  # list of (conn_no, dir, bytes)
        self.lock = threading.Lock()
        self.conns = 0
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.broker_port))
            with self.lock:
                n = self.conns
                self.conns += 1
            threading.Thread(target=self.pump, args=(n, "c", c, b),
                             daemon=True).start()
            threading.Thread(target=self.pump, args=(n, "s", b, c),
                             daemon=True).start()

    def pump(self, n, d, src, dst):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            with self.lock:
                self.log.append((n, d, data))
            try:
                dst.sendall(data)
            except OSError:
                return

    def take(self):
        with self.lock:
            log, self.log = self.log, []
        return log


PUB = "mosquitto_pub"
SUB = "mosquitto_sub"

# name, protocol level, commands run in order (a "&" first element runs the
# command in the background and waits for it at the end of the scenario).
SCENARIOS = [
    ("v31_pub_qos0_will_auth", 3, [
        [PUB, "-V", "mqttv31", "-i", "cap-v31", "-u", "user", "-P", "pass",
         "--will-topic", "will/v31", "--will-payload", "gone",
         "--will-qos", "1", "--will-retain", "-t", "v31/topic",
         "-m", "hello v31", "-q", "0"]]),
    ("v31_pub_qos2", 3, [
        [PUB, "-V", "mqttv31", "-i", "cap-v31q2", "-t", "v31/q2",
         "-m", "two", "-q", "2"]]),
    ("v31_sub_retained", 3, [
        [PUB, "-V", "mqttv31", "-i", "cap-v31r", "-t", "v31/ret",
         "-m", "kept", "-r", "-q", "1"],
        [SUB, "-V", "mqttv31", "-i", "cap-v31s", "-t", "v31/ret", "-q", "1",
         "-C", "1"]]),
    ("v311_pub_qos1", 4, [
        [PUB, "-V", "mqttv311", "-i", "cap-v311q1", "-k", "30",
         "-t", "a/b/c", "-m", "qos one", "-q", "1"]]),
    ("v311_pub_qos2_empty", 4, [
        [PUB, "-V", "mqttv311", "-i", "cap-v311q2", "-t", "a/b", "-n",
         "-q", "2"]]),
    ("v311_pub_will_auth", 4, [
        [PUB, "-V", "mqttv311", "-i", "cap-v311w", "-u", "alice",
         "-P", "s3cret", "-c", "--will-topic", "status/alice",
         "--will-payload", "offline", "--will-qos", "2",
         "-t", "status/alice", "-m", "online", "-r", "-q", "1"]]),
    ("v311_sub_multi", 4, [
        [PUB, "-V", "mqttv311", "-i", "cap-v311r", "-t", "sens/1/temp",
         "-m", "21.5", "-r", "-q", "2"],
        [SUB, "-V", "mqttv311", "-i", "cap-v311s", "-t", "sens/+/temp",
         "-t", "sens/#", "-t", "other", "-q", "2", "-C", "2"]]),
    ("v311_unsub", 4, [
        [SUB, "-V", "mqttv311", "-i", "cap-v311u", "-c", "-t", "x/y",
         "-U", "x/y", "-U", "x/#", "-E"]]),
    ("v5_pub_props", 5, [
        [PUB, "-V", "mqttv5", "-i", "cap-v5p", "-t", "v5/props",
         "-m", "{\"t\":1}", "-q", "1",
         "-D", "connect", "session-expiry-interval", "120",
         "-D", "connect", "request-problem-information", "1",
         "-D", "connect", "request-response-information", "1",
         "-D", "connect", "receive-maximum", "20",
         "-D", "connect", "topic-alias-maximum", "10",
         "-D", "connect", "user-property", "ck", "cv",
         "-D", "connect", "maximum-packet-size", "65536",
         "-D", "publish", "payload-format-indicator", "1",
         "-D", "publish", "message-expiry-interval", "3600",
         "-D", "publish", "content-type", "application/json",
         "-D", "publish", "response-topic", "v5/reply",
         "-D", "publish", "correlation-data", "c0ffee",
         "-D", "publish", "user-property", "k1", "v1",
         "-D", "publish", "user-property", "k2", "v2",
         "-D", "disconnect", "session-expiry-interval", "0"]]),
    ("v5_pub_qos2_will", 5, [
        [PUB, "-V", "mqttv5", "-i", "cap-v5w", "-u", "bob", "-P", "pw",
         "--will-topic", "v5/will", "--will-payload", "bye",
         "--will-qos", "1",
         "-D", "will", "will-delay-interval", "5",
         "-D", "will", "message-expiry-interval", "60",
         "-D", "will", "content-type", "text/plain",
         "-D", "will", "user-property", "wk", "wv",
         "-t", "v5/q2", "-m", "exactly once", "-q", "2"]]),
    ("v5_sub_subid", 5, [
        [PUB, "-V", "mqttv5", "-i", "cap-v5r", "-t", "v5/sub/a",
         "-m", "retained five", "-r", "-q", "1",
         "-D", "publish", "user-property", "origin", "cap"],
        [SUB, "-V", "mqttv5", "-i", "cap-v5s", "-t", "v5/sub/+", "-q", "1",
         "-D", "subscribe", "subscription-identifier", "42",
         "-D", "subscribe", "user-property", "sk", "sv",
         "-C", "1"]]),
    ("v5_unsub", 5, [
        [SUB, "-V", "mqttv5", "-i", "cap-v5u", "-c", "-t", "q/r",
         "-U", "q/r", "-U", "nothing/here", "-E",
         "-D", "unsubscribe", "user-property", "uk", "uv"]]),
    ("v5_clear_session", 5, [
        [SUB, "-V", "mqttv5", "-i", "cap-v5u", "-t", "q/r", "-E"]]),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="uvmqtt-capture-")
    conf = os.path.join(tmp, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\n"
                "persistence false\n" % port)
    broker = subprocess.Popen(["mosquitto", "-c", conf],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        relay = Relay(port)
        for name, level, cmds in SCENARIOS:
            relay.take()
            for cmd in cmds:
                args = cmd + ["-h", "127.0.0.1", "-p", str(relay.port)]
                subprocess.run(args, timeout=10, check=True,
                               stdout=subprocess.DEVNULL)
                time.sleep(0.2)
            time.sleep(0.3)
            log = relay.take()
            path = os.path.join(OUT, name + ".hex")
            with open(path, "w") as f:
                f.write("# captured from mosquitto 2.0 by test/codec/"
                        "capture.py\n")
                for cmd in cmds:
                    f.write("# $ " + " ".join(cmd) + "\n")
                f.write("version %d\n" % level)
                conns = sorted(set(n for n, _, _ in log))
                for c in conns:
                    f.write("connection\n")
                    for n, d, data in log:
                        if n != c:
                            continue
                        for i in range(0, len(data), 32):
                            f.write("%s %s\n" % (d, data[i:i + 32].hex()))
            print("wrote", path)
    finally:
        broker.terminate()
        broker.wait(timeout=5)


if __name__ == "__main__":
    main()
