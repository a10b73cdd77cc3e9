// <whyfail-panel>: the "why did this fail" panel, as one dependency-free web component.
//
// Give it a whyfail resolution (contract section 2) and it shows, for the person whose workflow
// failed: what failed in plain words, the cause with its evidence, the actions as buttons, and
// the resolution path as a small picture (causes ruled out are greyed). A "Details" toggle opens
// the support view (ids, every check, its outcome and detail).
//
// The buttons do nothing by themselves: they dispatch a `whyfail-action` event (bubbling,
// composed) with `{id, params, actor, automatic}`, and the host application decides what a
// button does (open the reconnect dialog, retry the node, ...).
//
// Usage:
//   <script type="module" src="/panel/whyfail-panel.js"></script>
//   <whyfail-panel></whyfail-panel>
//   panel.resolution = resolutionObject;          // or
//   <whyfail-panel src="/path/to/resolution.json"></whyfail-panel>
//   <whyfail-panel theme="dark">                   // light | dark | auto (default: auto)
//
// All text from the resolution is inserted as text, never as HTML.

const STYLE = `
:host {
  --wf-bg: #ffffff; --wf-fg: #1b1f24; --wf-muted: #57606a; --wf-border: #d0d7de;
  --wf-accent: #0b57d0; --wf-accent-fg: #ffffff; --wf-ok: #1a7f37; --wf-warn: #9a6700;
  --wf-bad: #cf222e; --wf-chip: #f6f8fa; --wf-focus: #0b57d0;
  display: block; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--wf-fg); background: var(--wf-bg); border: 1px solid var(--wf-border);
  border-radius: 10px; padding: 16px 18px; max-width: 720px;
}
:host([theme="dark"]) {
  --wf-bg: #0d1117; --wf-fg: #e6edf3; --wf-muted: #9da7b3; --wf-border: #3d444d;
  --wf-accent: #4493f8; --wf-accent-fg: #0d1117; --wf-ok: #3fb950; --wf-warn: #d29922;
  --wf-bad: #f85149; --wf-chip: #161b22; --wf-focus: #4493f8;
}
@media (prefers-color-scheme: dark) {
  :host(:not([theme="light"])) {
    --wf-bg: #0d1117; --wf-fg: #e6edf3; --wf-muted: #9da7b3; --wf-border: #3d444d;
    --wf-accent: #4493f8; --wf-accent-fg: #0d1117; --wf-ok: #3fb950; --wf-warn: #d29922;
    --wf-bad: #f85149; --wf-chip: #161b22; --wf-focus: #4493f8;
  }
}
h2 { font-size: 1.15em; margin: 0 0 4px; }
h3 { font-size: 0.95em; margin: 14px 0 6px; color: var(--wf-muted); text-transform: uppercase; letter-spacing: .04em; }
p { margin: 6px 0; }
.status { font-size: .85em; color: var(--wf-muted); }
.cause { border-left: 4px solid var(--wf-ok); padding: 4px 10px; margin: 8px 0; }
.cause.likely { border-color: var(--wf-warn); }
.cause.possible { border-color: var(--wf-border); }
ul { margin: 4px 0; padding-left: 1.2em; }
.actions { display: flex; flex-wrap: wrap; gap: 8px; margin-top: 6px; }
button { font: inherit; border-radius: 6px; padding: 6px 14px; cursor: pointer;
  border: 1px solid var(--wf-border); background: var(--wf-chip); color: var(--wf-fg); }
button.primary { background: var(--wf-accent); color: var(--wf-accent-fg); border-color: var(--wf-accent); }
button:focus-visible, summary:focus-visible { outline: 3px solid var(--wf-focus); outline-offset: 2px; }
.who { font-size: .8em; color: var(--wf-muted); margin-left: 4px; }
.path { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; list-style: none; padding: 0; margin: 4px 0; }
.path li { border: 1px solid var(--wf-border); border-radius: 999px; padding: 2px 10px; font-size: .85em; background: var(--wf-chip); }
.path li.confirmed { border-color: var(--wf-ok); color: var(--wf-ok); font-weight: 600; }
.path li.likely, .path li.inconclusive { border-color: var(--wf-warn); }
.path li.ruled_out { color: var(--wf-muted); text-decoration: line-through; opacity: .75; }
.path li.arrow { border: none; background: none; padding: 0; color: var(--wf-muted); }
.details table { border-collapse: collapse; width: 100%; font-size: .85em; }
.details td, .details th { text-align: left; vertical-align: top; padding: 3px 6px; border-top: 1px solid var(--wf-border); }
.details code { font-size: .95em; }
.outcome-pass, .outcome-confirmed { color: var(--wf-ok); }
.outcome-fail, .outcome-ruled_out { color: var(--wf-muted); }
.outcome-error { color: var(--wf-bad); }
.empty { color: var(--wf-muted); }
.live { font-size: .8em; color: var(--wf-accent); margin-left: 6px; white-space: nowrap; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
`;

const DISPOSITION = {
  retry: "The step can simply be retried.",
  retry_after: "The step can be retried after a short wait.",
  refresh_then_retry: "The sign-in can be renewed automatically, then the step retried.",
  needs_user: "This needs you to do something before the step can work.",
  needs_admin: "This needs an administrator.",
  stop: "Retrying will not help until the cause is fixed.",
};

const ACTOR = { user: "you", admin: "an administrator", platform: "automatic", provider_support: "the provider's support" };

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/// A tiny Markdown subset (paragraphs, "- " lists, **bold**), built as DOM nodes from text.
function markdown(text) {
  const out = [];
  const inline = (line) => {
    const parts = String(line).split(/\*\*(.+?)\*\*/g);
    return parts.map((p, i) => (i % 2 ? el("strong", {}, p) : p));
  };
  for (const block of String(text || "").split(/\n\s*\n/)) {
    const lines = block.split("\n").filter((l) => l.trim() !== "");
    if (!lines.length) continue;
    if (lines.every((l) => /^\s*[-*]\s+/.test(l))) {
      out.push(el("ul", {}, lines.map((l) => el("li", {}, inline(l.replace(/^\s*[-*]\s+/, ""))))));
    } else if (/^#{1,6}\s/.test(lines[0])) {
      out.push(el("p", {}, el("strong", {}, lines[0].replace(/^#+\s*/, ""))));
      if (lines.length > 1) out.push(el("p", {}, inline(lines.slice(1).join(" "))));
    } else {
      out.push(el("p", {}, inline(lines.join(" "))));
    }
  }
  return out;
}

class WhyfailPanel extends HTMLElement {
  static get observedAttributes() {
    return ["src"];
  }

  constructor() {
    super();
    this._root = this.attachShadow({ mode: "open" });
    this._resolution = null;
    this._open = false;
  }

  get resolution() {
    return this._resolution;
  }

  set resolution(value) {
    this._resolution = value;
    this._render();
  }

  connectedCallback() {
    if (!this.hasAttribute("role")) this.setAttribute("role", "region");
    if (!this.hasAttribute("aria-label")) this.setAttribute("aria-label", "Why this step failed");
    if (this._resolution) this._render();
    else if (!this.getAttribute("src")) this._render();
  }

  attributeChangedCallback(name, _old, value) {
    if (name === "src" && value) this._load(value);
  }

  async _load(url) {
    try {
      const r = await fetch(url, { headers: { accept: "application/json" } });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      this.resolution = await r.json();
    } catch (e) {
      this._resolution = null;
      this._render(`The diagnosis could not be loaded (${e.message}).`);
    }
  }

  _emit(action) {
    this.dispatchEvent(
      new CustomEvent("whyfail-action", {
        bubbles: true,
        composed: true,
        detail: { id: action.id, params: action.params || {}, actor: action.actor, automatic: !!action.automatic },
      }),
    );
  }

  _render(error) {
    const root = this._root;
    root.replaceChildren(el("style", {}, STYLE));
    const res = this._resolution;
    if (!res) {
      root.append(el("p", { class: "empty", role: "status" }, error || "No diagnosis yet."));
      return;
    }
    const causes = res.root_causes || [];
    const top = causes[0];
    const title = res.symptom ? res.symptom.title : "The step failed and no known cause matched";

    root.append(el("h2", { id: "wf-title" }, title));
    const disp = res.disposition || {};
    let dispText = DISPOSITION[disp.kind] || "";
    if (disp.kind === "retry_after" && disp.retry_after_seconds != null) {
      dispText = `The step can be retried in ${disp.retry_after_seconds} seconds.`;
    }
    root.append(el("p", { class: "status", "data-part": "disposition" }, dispText));

    // What happened, in the user's words: the explanation's first paragraphs.
    const story = el("div", { "data-part": "explanation" });
    // The explanation's opening section: the title above already says what failed, and the
    // actions below say what to do, so headings (`# x`, `**x**` alone) end or are skipped.
    const heading = (p) => /^#{1,6}\s/.test(p) || /^\*\*[^*]+\*\*$/.test(p);
    const opening = [];
    for (const p of (res.explanation || "").split(/\n\s*\n/).map((x) => x.trim())) {
      if (heading(p)) {
        if (opening.length) break;
        continue;
      }
      if (p) opening.push(p);
    }
    story.append(...markdown(opening.slice(0, 2).join("\n\n")));
    root.append(story);

    if (top) {
      const c = el("section", { class: `cause ${top.confidence}`, "aria-labelledby": "wf-cause", "data-part": "cause" });
      c.append(
        el("h3", { id: "wf-cause" }, top.confidence === "confirmed" ? "Why" : "Most likely why"),
        el("p", {}, el("strong", {}, top.title)),
      );
      if ((top.evidence || []).length) {
        // Evidence a live check gave (the path entry that produced it carries `live`) is shown
        // as such: it was asked of the provider just now, not read from the event.
        const live = new Set((res.path || []).filter((p) => p.live && p.detail).map((p) => p.detail));
        c.append(el("ul", { "aria-label": "Evidence" }, top.evidence.map((e) =>
          live.has(e) ? el("li", { "data-live": "true" }, e, el("span", { class: "live" }, "checked at the provider just now")) : el("li", {}, e))));
      }
      root.append(c);
    } else {
      root.append(el("p", { class: "empty", "data-part": "cause" }, "No cause could be confirmed from the information available."));
    }

    const actions = res.actions || [];
    if (actions.length) {
      root.append(el("h3", { id: "wf-actions" }, "What to do"));
      const bar = el("div", { class: "actions", role: "group", "aria-labelledby": "wf-actions" });
      actions.forEach((a, i) => {
        const b = el(
          "button",
          { type: "button", class: i === 0 ? "primary" : null, "data-action": a.id, "aria-describedby": `wf-who-${i}` },
          a.title,
        );
        b.addEventListener("click", () => this._emit(a));
        bar.append(el("span", {}, b, el("span", { class: "who", id: `wf-who-${i}` }, ACTOR[a.actor] ? `(${ACTOR[a.actor]})` : "")));
      });
      root.append(bar);
    }

    // The path as a picture: symptom → each cause considered (ruled out greyed) → first action.
    const considered = (res.path || []).filter((p) => p.kind === "cause" && p.outcome !== "skipped");
    if (res.symptom || considered.length) {
      root.append(el("h3", { id: "wf-path" }, "How whyfail decided"));
      const list = el("ol", { class: "path", "aria-labelledby": "wf-path", "data-part": "path" });
      const confidence = Object.fromEntries(causes.map((c) => [c.id, c.confidence]));
      if (res.symptom) list.append(el("li", { class: "symptom" }, res.symptom.id), el("li", { class: "arrow", "aria-hidden": "true" }, "→"));
      // A cause decided by a live check: one of the check entries after it (up to the next
      // cause or symptom) carries `live`.
      const path = res.path || [];
      const checkedLive = (p) => {
        for (let i = path.indexOf(p) + 1; i < path.length && path[i].kind === "check"; i++) if (path[i].live) return true;
        return false;
      };
      for (const p of considered) {
        const state = p.outcome === "ruled_out" ? "ruled_out" : confidence[p.node] || p.outcome;
        const label = { ruled_out: "ruled out", confirmed: "confirmed", likely: "likely", possible: "possible", inconclusive: "undecided" }[state] || state;
        const live = checkedLive(p);
        list.append(el("li", { class: state, title: (live ? "Checked at the provider just now. " : "") + (p.detail || ""), "data-node": p.node, "data-live": live ? "true" : null },
          `${p.node} `, el("span", { class: "sr-only" }, live ? `(${label}, checked at the provider just now)` : `(${label})`)));
      }
      if (actions.length) list.append(el("li", { class: "arrow", "aria-hidden": "true" }, "→"), el("li", { class: "confirmed" }, actions[0].id));
      root.append(list);
    }

    // Support view.
    const toggle = el("button", { type: "button", "aria-expanded": String(this._open), "aria-controls": "wf-details", "data-part": "details-toggle" }, this._open ? "Hide details" : "Details");
    toggle.addEventListener("click", () => {
      this._open = !this._open;
      this._render();
      const t = this._root.querySelector('[data-part="details-toggle"]');
      if (t) t.focus();
    });
    root.append(el("p", {}, toggle));
    const details = el("div", { id: "wf-details", class: "details", hidden: !this._open });
    details.append(
      el("p", {}, "Status: ", el("code", {}, res.status), " · disposition: ", el("code", {}, disp.kind || "")),
      el("p", {}, "Symptom: ", el("code", {}, res.symptom ? `${res.symptom.id} (${res.symptom.playbook})` : "none"), " · event: ", el("code", {}, res.event_id || "—")),
    );
    // Offline: the live checks that would settle an open answer (ask again with them on).
    if ((res.settled_by || []).length) {
      details.append(el("p", { "data-part": "settled-by" }, "A live check would settle this: ",
        ...res.settled_by.flatMap((s, i) => [i ? "; " : "", el("code", {}, s.fact), ` (${(s.would_settle || []).join(", ")})`])));
    }
    const rows = (res.path || []).map((p) =>
      el("tr", {}, el("td", {}, el("code", {}, p.node)), el("td", {}, p.kind),
        el("td", { class: `outcome-${p.outcome}` }, p.outcome, p.live ? el("span", { class: "live" }, "live") : ""), el("td", {}, p.detail || "")),
    );
    details.append(el("table", { "aria-label": "Resolution path" }, el("tr", {}, el("th", {}, "node"), el("th", {}, "kind"), el("th", {}, "outcome"), el("th", {}, "detail")), rows));
    root.append(details);
  }
}

if (!customElements.get("whyfail-panel")) customElements.define("whyfail-panel", WhyfailPanel);
export { WhyfailPanel };
