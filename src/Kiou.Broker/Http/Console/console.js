// KIOU's console: renders /api/* into the page. Every value from the broker is untrusted (client ids, group ids,
// topic configs come from clients), so the DOM is built with createElement and textContent only, never innerHTML.
"use strict";

const fmt = new Intl.NumberFormat("en-US");
const fmt1 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function num(v, testid) { return el("td", { class: "num", "data-testid": testid }, fmt.format(v)); }

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? fmt.format(n) : fmt1.format(n)) + " " + units[i];
}

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return d > 0 ? `${d}d ${h}h` : h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${Math.floor(s % 60)}s` : `${Math.floor(s)}s`;
}

async function get(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(`${path}: ${body.error || r.status}`);
  return body;
}

function more(id, page, what) {
  const note = document.getElementById(id);
  note.textContent = page.more > 0 ? `${fmt.format(page.more)} more ${what} not shown (the JSON API pages them: ?offset=${page.offset + page.limit}&limit=${page.limit})` : "";
}

function renderBroker(b) {
  const box = document.getElementById("broker");
  box.replaceChildren(...[
    el("span", { "data-testid": "broker-version" }, `version ${b.version}`), " · ",
    `up ${duration(b.uptimeSeconds)}`, " · ",
    `node ${b.nodeId}, cluster ${b.clusterId}`, " · ",
    `I/O ${b.io}`, " · ",
    b.listeners.map(l => `${l.name} ${l.address}`).join(", "), " · ",
    `${fmt.format(b.topics)} topics, ${fmt.format(b.partitions)} partitions, ${fmt.format(b.groups)} groups`,
    b.notReady ? el("span", { class: "badge" }, `not ready: ${b.notReady}`) : null].filter(c => c !== null));
  const body = document.getElementById("settings-body");
  body.replaceChildren(...b.settings.map(s => el("tr",
    { "data-testid": "setting-row", "data-name": s.name, class: s.value !== s.default ? "changed" : null },
    el("td", { class: "name nowrap" }, s.name),
    el("td", { class: "name value", "data-testid": "setting-value" }, s.value),
    el("td", { class: "name nowrap" }, s.default),
    el("td", { class: "meaning" }, ...markdownCode(s.meaning)))));
}

// README's wording marks names with backticks: shown as code, still as text nodes.
function markdownCode(text) {
  return text.split("`").map((part, i) => i % 2 === 1 ? el("code", {}, part) : part);
}

const openTopics = new Set();

function renderTopics(page) {
  document.getElementById("topics-count").textContent = `(${fmt.format(page.total)})`;
  const rows = [];
  for (const t of page.topics) {
    let start = 0, hw = 0, end = 0;
    for (const p of t.partitions) { start += p.startOffset; hw += p.highWatermark; end += p.endOffset; }
    const configs = Object.entries(t.configs);
    const details = el("details", { "data-topic": t.name },
      el("summary", {}, t.name, t.internal ? el("span", { class: "badge" }, "internal") : null),
      el("table", { class: "inner", "data-testid": "partitions-table" },
        el("thead", {}, el("tr", {}, ...["Partition", "Start offset", "High watermark", "End offset", "Size"].map(h => el("th", { class: "num" }, h)))),
        el("tbody", {}, ...t.partitions.map(p => el("tr", { "data-testid": "partition-row", "data-partition": p.partition },
          num(p.partition), num(p.startOffset), num(p.highWatermark), num(p.endOffset, "partition-end-offset"), el("td", { class: "num" }, bytes(p.sizeBytes)))))),
      t.partitionsMore > 0 ? el("p", { class: "note" }, `${fmt.format(t.partitionsMore)} more partitions: /api/topic?name=${encodeURIComponent(t.name)}`) : null);
    if (openTopics.has(t.name)) details.open = true;
    details.addEventListener("toggle", () => details.open ? openTopics.add(t.name) : openTopics.delete(t.name));
    const partial = t.partitionsMore > 0 ? " *" : "";
    rows.push(el("tr", { "data-testid": "topic-row", "data-topic": t.name },
      el("td", { class: "name" }, details),
      num(t.partitionCount, "topic-partitions"),
      num(t.records, "topic-records"),
      el("td", { class: "num", "data-testid": "topic-size" }, bytes(t.sizeBytes)),
      el("td", { class: "num" }, fmt.format(start) + partial),
      el("td", { class: "num" }, fmt.format(hw) + partial),
      el("td", { class: "num", "data-testid": "topic-end-offset" }, fmt.format(end) + partial),
      el("td", { class: "cfg", "data-testid": "topic-configs" }, configs.length === 0 ? "defaults" : configs.map(([k, v]) => `${k}=${v}`).join("\n"))));
  }
  document.getElementById("topics-body").replaceChildren(...rows);
  more("topics-more", page, "topics");
}

function renderGroups(page) {
  document.getElementById("groups-count").textContent = `(${fmt.format(page.total)})`;
  const cards = page.groups.map(g => el("div", { class: "group", "data-testid": "group", "data-group": g.id },
    el("h3", { "data-testid": "group-id" }, g.id,
      el("span", { class: "badge", "data-testid": "group-state" }, g.state),
      g.protocol ? el("span", { class: "badge" }, `${g.protocolType}/${g.protocol}`) : null,
      el("span", { class: "badge" }, `generation ${g.generation}`)),
    el("div", {}, el("span", { "data-testid": "group-member-count" }, `${fmt.format(g.memberCount)} member${g.memberCount === 1 ? "" : "s"}`),
      " · lag ", el("span", { class: "lag", "data-testid": "group-lag" }, fmt.format(g.lagListed))),
    g.members.length === 0 ? null : el("table", { class: "inner", "data-testid": "members-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "Client id"), el("th", {}, "Host"), el("th", {}, "Member id"), el("th", {}, "Assigned partitions"))),
      el("tbody", {}, ...g.members.map(m => el("tr", { "data-testid": "member-row" },
        el("td", { class: "name", "data-testid": "member-client-id" }, m.clientId),
        el("td", { class: "name" }, m.clientHost),
        el("td", { class: "name" }, m.memberId + (m.instanceId ? ` (static: ${m.instanceId})` : "")),
        el("td", { class: "name pre", "data-testid": "member-assignment" }, m.assignment.map(a => `${a.topic}: ${a.partitions.join(", ")}`).join("\n")))))),
    g.membersMore > 0 ? el("p", { class: "note" }, `${fmt.format(g.membersMore)} more members: /api/group?id=${encodeURIComponent(g.id)}`) : null,
    g.offsets.length === 0 ? el("p", { class: "note" }, "no committed offsets") : el("table", { class: "inner", "data-testid": "offsets-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "Topic"), ...["Partition", "Committed", "High watermark", "Lag"].map(h => el("th", { class: "num" }, h)))),
      el("tbody", {}, ...g.offsets.map(o => el("tr", { "data-testid": "offset-row", "data-topic": o.topic, "data-partition": o.partition },
        el("td", { class: "name" }, o.topic), num(o.partition), num(o.committed, "offset-committed"), num(o.highWatermark), num(o.lag, "offset-lag"))))),
    g.offsetsMore > 0 ? el("p", { class: "note" }, `${fmt.format(g.offsetsMore)} more committed partitions (lag above counts the listed ones): /api/group?id=${encodeURIComponent(g.id)}`) : null));
  document.getElementById("groups-body").replaceChildren(...(cards.length ? cards : [el("p", { class: "note" }, "no consumer groups")]));
  more("groups-more", page, "groups");
}

function renderRates(page) {
  document.getElementById("rates-window").textContent = page.windowSeconds > 0 ? `(averaged over the last ${fmt1.format(page.windowSeconds)} s)` : "(measuring…)";
  const rows = page.topics.map(r => el("tr", { "data-testid": "rate-row", "data-topic": r.topic },
    el("td", { class: "name" }, r.topic),
    el("td", { class: "num", "data-testid": "rate-produced-records" }, fmt1.format(r.producedRecordsPerSecond)),
    el("td", { class: "num", "data-testid": "rate-produced-bytes" }, bytes(r.producedBytesPerSecond) + "/s"),
    el("td", { class: "num", "data-testid": "rate-fetched-records" }, fmt1.format(r.fetchedRecordsPerSecond)),
    el("td", { class: "num", "data-testid": "rate-fetched-bytes" }, bytes(r.fetchedBytesPerSecond) + "/s"),
    num(r.producedRecords, "total-produced-records"),
    el("td", { class: "num" }, bytes(r.producedBytes)),
    num(r.fetchedRecords, "total-fetched-records"),
    el("td", { class: "num" }, bytes(r.fetchedBytes))));
  document.getElementById("rates-body").replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 9, class: "note" }, "nothing produced or fetched since the broker started"))]));
  more("rates-more", page, "topics");
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [broker, topics, groups, rates] = await Promise.all([get("/api/broker"), get("/api/topics"), get("/api/groups"), get("/api/rates")]);
    renderBroker(broker);
    renderTopics(topics);
    renderGroups(groups);
    renderRates(rates);
    status.className = "";
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (e) {
    status.className = "error";
    status.textContent = `${e.message}; retrying`;
  }
  setTimeout(refresh, 1000);
}

refresh();
