// The live page: polls api/live and builds the view with textContent only
// (no markup from data: camera ids, labels and messages stay text).
"use strict";

const POLL_MS = 2000;
const cards = new Map(); // camera id -> its elements

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function ageText(seconds) {
  if (seconds === null) return "never seen";
  if (seconds < 60) return seconds.toFixed(1) + " s ago";
  if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
  return (seconds / 3600).toFixed(1) + " h ago";
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString();
}

function card(id) {
  let parts = cards.get(id);
  if (parts) return parts;
  const root = element("section", "camera");
  root.dataset.camera = id;
  const title = element("h2", "", id);
  const state = element("span", "state");
  title.prepend(state);
  const frame = element("img", "frame");
  frame.alt = "newest frame of " + id;
  const facts = element("p", "facts");
  const objects = element("p", "objects");
  const alerts = element("ul", "alerts");
  root.append(title, frame, facts, objects, alerts);
  parts = { root, state, frame, facts, objects, alerts, seq: null, keys: "" };
  cards.set(id, parts);
  return parts;
}

function renderAlerts(parts, alerts) {
  const keys = alerts.map((a) => a.key + (a.snapshot ? "+" : "") + (a.clip ? "+clip" : "")).join("\n");
  if (keys === parts.keys) return;
  parts.keys = keys;
  const items = alerts.map((alert) => {
    const item = element("li", "alert");
    item.dataset.key = alert.key;
    item.dataset.severity = alert.severity;
    if (alert.snapshot) {
      const link = element("a");
      link.href = "snapshots/" + alert.snapshot.replace(/^snapshots\//, "");
      const image = element("img");
      image.alt = "snapshot";
      image.src = link.href;
      link.append(image);
      item.append(link);
    }
    const text = element("div");
    text.append(element("div", "what", alert.message || alert.rule + ": " + alert.label));
    const when = element("div", "when", clock(alert.time) + " · " + alert.rule);
    if (alert.clip) {
      const clip = element("a", "clip", "clip");
      clip.href = alert.clip;
      when.append(" · ", clip);
    }
    text.append(when);
    item.append(text);
    return item;
  });
  parts.alerts.replaceChildren(...items);
}

function render(state) {
  const seen = new Set();
  const grid = document.getElementById("cameras");
  for (const camera of state.cameras) {
    seen.add(camera.id);
    const parts = card(camera.id);
    if (!parts.root.isConnected) grid.append(parts.root);
    parts.root.dataset.state = camera.stale ? "stale" : "live";
    parts.state.textContent = camera.stale ? "STALE" : "live";
    if (camera.frame && camera.seq !== parts.seq) {
      parts.seq = camera.seq;
      parts.frame.src = camera.frame;
    }
    parts.facts.textContent =
      "last result " + ageText(camera.age_s) + " · " + camera.fps.toFixed(1) + " fps · " +
      camera.gaps + " gaps" + (camera.seq === null ? "" : " · seq " + camera.seq);
    const objects = Object.entries(camera.objects).map(([label, n]) => n + " " + label);
    parts.objects.textContent = objects.length ? "now: " + objects.join(", ") : "now: nothing";
    renderAlerts(parts, camera.alerts);
  }
  for (const [id, parts] of cards) {
    if (!seen.has(id)) {
      parts.root.remove();
      cards.delete(id);
    }
  }
  document.getElementById("empty").hidden = state.cameras.length > 0;
  renderHealth(state.health);
}

function renderHealth(health) {
  const line = document.getElementById("health");
  const parts = [];
  const lag = (name, value) =>
    name + " lag " + (value === null ? "unknown (nothing committed)" : value);
  parts.push(lag("broker", health.broker_lag), lag("alerts", health.alerts_lag));
  parts.push(
    "dead letters in the last hour " +
      (health.dead_letters_last_hour === null ? "unknown" : health.dead_letters_last_hour)
  );
  line.replaceChildren();
  line.append(element("span", "", parts.join(" · ")));
  if (health.error) line.append(element("span", "bad", " · Kafka: " + health.error));
  line.dataset.read = health.read_s_ago === null ? "never" : "yes";
}

async function refresh() {
  const connection = document.getElementById("connection");
  try {
    const response = await fetch("api/live", { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    connection.hidden = true;
  } catch (error) {
    connection.textContent = "cannot reach the alerts daemon (" + error.message + "); retrying";
    connection.hidden = false;
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

refresh();
