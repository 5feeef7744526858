// tether's admin dashboard. Plain JavaScript, no build step, served by
// admin/dashboard.go with a CSP that allows only this origin: nothing here
// may load from elsewhere, use inline scripts or style attributes (styles
// are set through the CSSOM, which the CSP allows).
//
// Every 2 s it reads /api/v1/virtual-servers and /api/v1/pools; rates are
// computed here from counter deltas between two reads. Changes go through
// the API as any client's do: POST with "X-Tether: 1".
//
// Token: with a token configured the API answers 401; the page then asks for
// the token once and keeps it in sessionStorage (this tab only, gone when it
// closes, never a cookie so no other site's request carries it) and sends it
// as "Authorization: Bearer". Without a token (loopback) nothing is asked.
//
// For tests and scripts, the figures carry data- attributes: body
// data-refreshes (completed refreshes), [data-vs] cards with
// [data-field][data-value] figures and [data-side][data-state] socket
// counts, [data-pool] > [data-member] rows with [data-field] cells and
// [data-action] buttons, #reload-result with data-status.
'use strict';

(() => {
  const REFRESH_MS = 2000;
  const WINDOW_S = 300; // the charts keep the last 5 minutes
  const TOKEN_KEY = 'tether.adminToken';
  // The eleven TCP states in kernel order, as the API names them.
  const STATES = ['ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT',
    'CLOSED', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING'];
  const ACTIONS = [
    { action: 'enable', admin: 'enabled', verb: 'Enable' },
    { action: 'disable', admin: 'disabled', verb: 'Disable' },
    { action: 'drain', admin: 'draining', verb: 'Drain' },
  ];

  const $ = (sel) => document.querySelector(sel);

  // h builds an element: attrs maps names to values ("class", "text",
  // "data-x", "hidden" ...), children are nodes or strings.
  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) e.append(c);
    return e;
  }

  function fmtInt(n) { return (n === null || n === undefined) ? '—' : String(n); }
  function fmtRate(x) { return (x === null || x === undefined || !isFinite(x)) ? '—' : x.toFixed(x < 10 ? 2 : 1); }
  function fmtPct(x) { return (x === null || !isFinite(x)) ? '—' : (100 * x).toFixed(1) + ' %'; }

  // ---- API -------------------------------------------------------------

  let polling = true;

  // api calls the admin API and never throws: {status, body, error}, with
  // status 0 when the API could not be reached and error the API's message
  // (or the response's text) for any status but 2xx.
  async function api(method, path) {
    const headers = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = 'Bearer ' + token;
    if (method !== 'GET') headers['X-Tether'] = '1';
    let resp;
    try {
      resp = await fetch(path, { method, headers, cache: 'no-store', credentials: 'omit' });
    } catch (err) {
      return { status: 0, body: null, error: 'cannot reach the admin API: ' + err.message };
    }
    const text = await resp.text();
    let body = null;
    try { body = JSON.parse(text); } catch (_) { /* not JSON: error below */ }
    let error = null;
    if (!resp.ok) {
      error = (body && typeof body.error === 'string') ? body.error : (text.trim() || resp.statusText);
      if (resp.status === 401) askToken(token !== null);
    }
    return { status: resp.status, body, error };
  }

  function askToken(hadToken) {
    polling = false;
    if (hadToken) sessionStorage.removeItem(TOKEN_KEY);
    showBanner(hadToken ? 'The token was refused: enter it again.' : 'The admin API needs its token.');
    $('#token-form').hidden = false;
    $('#token').focus();
  }

  function showBanner(msg) {
    const b = $('#banner');
    b.textContent = msg;
    b.hidden = false;
  }

  // ---- refresh loop ----------------------------------------------------

  let timer = 0;
  let refreshes = 0;
  let inFlight = null;

  // refresh reads both endpoints and renders them; one at a time.
  function refresh() {
    if (inFlight) return inFlight;
    clearTimeout(timer);
    inFlight = refreshOnce().finally(() => {
      inFlight = null;
      if (polling) timer = setTimeout(refresh, REFRESH_MS);
    });
    return inFlight;
  }

  async function refreshOnce() {
    const [vs, pools] = await Promise.all([api('GET', '/api/v1/virtual-servers'), api('GET', '/api/v1/pools')]);
    const t = Date.now() / 1000;
    const failed = [['virtual servers', vs], ['pools', pools]].filter(([, r]) => r.status !== 200);
    if (failed.length === 0) {
      $('#banner').hidden = true;
    } else if (polling) {
      showBanner(failed.map(([what, r]) => `${what}: ` + (r.status ? `HTTP ${r.status}: ${r.error}` : r.error)).join('; '));
    }
    if (vs.status === 200 && vs.body) renderVirtualServers(vs.body.virtual_servers || [], t);
    if (pools.status === 200 && pools.body) renderPools(pools.body.pools || []);
    refreshes++;
    document.body.dataset.refreshes = String(refreshes);
    const u = $('#updated');
    u.textContent = failed.length ? 'update failed at ' + new Date().toLocaleTimeString() : 'updated ' + new Date().toLocaleTimeString();
  }

  // ---- virtual servers -------------------------------------------------

  // cards: virtual server name -> its card state (element, samples, chart).
  const cards = new Map();

  function renderVirtualServers(list, t) {
    const root = $('#virtual-servers');
    const seen = new Set();
    for (const vs of list) {
      seen.add(vs.name);
      let card = cards.get(vs.name);
      if (card && card.mode !== vs.mode) { // changed by a reload: start over
        card.destroy();
        card = null;
      }
      if (!card) {
        card = newCard(vs);
        cards.set(vs.name, card);
        root.append(card.el);
        card.update(vs, t);
        card.mountChart(); // once the figures and the table have their size
        continue;
      }
      card.update(vs, t);
      card.resize();
    }
    for (const [name, card] of cards) {
      if (!seen.has(name)) { card.destroy(); cards.delete(name); }
    }
  }

  function figure(field, label) {
    const value = h('div', { class: 'value', text: '—' });
    const note = h('div', { class: 'note' });
    const el = h('div', { class: 'figure', 'data-field': field, 'data-value': '' },
      h('div', { class: 'label', text: label }), value, note);
    return {
      el,
      set(raw, text, noteText) {
        el.dataset.value = (raw === null || raw === undefined) ? '' : String(raw);
        value.textContent = text;
        note.textContent = noteText || '';
      },
    };
  }

  function newCard(vs) {
    const http = vs.mode === 'http';
    const f = {
      clientActive: figure('client-active', 'client conns open'),
      accepted: figure('accepted', 'client conns accepted'),
      serverActive: figure('server-active', 'server conns open'),
      serverOpened: figure('server-opened', 'server conns opened'),
      requests: figure('requests-total', 'requests'),
      reqRate: figure('req-rate', 'requests/s'),
      connRate: figure('conn-rate', 'client conns/s'),
      perConn: figure('req-per-conn', 'requests per client conn'),
      reuse: figure('reuse-ratio', 'pool reuse'),
      twClient: figure('time-wait-client', 'TIME_WAIT client side'),
      twServer: figure('time-wait-server', 'TIME_WAIT server side'),
    };
    const shown = http
      ? [f.clientActive, f.accepted, f.requests, f.reqRate, f.connRate, f.perConn, f.reuse, f.serverOpened, f.twClient, f.twServer]
      : [f.clientActive, f.accepted, f.connRate, f.serverActive, f.serverOpened, f.twClient, f.twServer];

    // The census table: a row per state, a cell per side.
    const cells = { client: {}, server: {} };
    const rows = STATES.map((st) => {
      const tds = ['client', 'server'].map((side) => {
        const num = h('span', { text: '0' });
        const bar = h('span', { class: 'bar' });
        const td = h('td', { 'data-side': side, 'data-state': st, 'data-value': '0' }, num, bar);
        cells[side][st] = { td, num, bar };
        return td;
      });
      return h('tr', {}, h('td', { text: st }), ...tds);
    });
    const census = h('div', { class: 'census' },
      h('table', {}, h('thead', {}, h('tr', {}, h('th', { text: 'TCP state' }), h('th', { text: 'client side' }), h('th', { text: 'server side' }))),
        h('tbody', {}, ...rows)));
    const chartBox = h('div', { class: 'chart' });
    const head = h('div', { class: 'vs-head' }, h('h3', { text: vs.name }),
      h('span', { class: 'muted', 'data-field': 'describe' }));
    const el = h('section', { class: 'card vs', 'data-vs': vs.name, 'data-mode': vs.mode },
      head, h('div', { class: 'figures' }, ...shown.map((x) => x.el)), h('div', { class: 'vs-body' }, census, chartBox),
      h('div', { class: 'muted census-note', 'data-field': 'census-note' }));

    const series = http
      ? [{ label: 'requests/s', stroke: '#1f4e79', width: 2 }, { label: 'client conns/s', stroke: '#1a7f37' }, { label: 'server conns/s', stroke: '#9a6700' }]
      : [{ label: 'client conns/s', stroke: '#1a7f37', width: 2 }, { label: 'server conns/s', stroke: '#9a6700' }];
    const samples = []; // {t, req, acc, srv}: counters as read
    const data = [[], ...series.map(() => [])]; // uPlot columns: time, then a rate per series
    let chart = null;

    function chartWidth() { return Math.max(240, chartBox.clientWidth || 600); }

    function rate(a, b, key) {
      if (a[key] === null || b[key] === null) return null;
      const d = b[key] - a[key];
      return d < 0 ? null : d / (b.t - a.t); // < 0: counters restarted (reload)
    }

    // windowRatio: requests per client conn over the chart's window.
    function windowRatio() {
      if (samples.length < 2) return null;
      const a = samples[0], b = samples[samples.length - 1];
      const dr = b.req - a.req, dc = b.acc - a.acc;
      return dc > 0 && dr >= 0 ? dr / dc : null;
    }

    return {
      el,
      mode: vs.mode,
      mountChart() {
        if (typeof uPlot !== 'function') {
          chartBox.textContent = 'charts unavailable: uPlot did not load';
          return;
        }
        chart = new uPlot({
          width: chartWidth(),
          height: 200,
          series: [{}, ...series.map((s) => ({ ...s, value: (u, v) => fmtRate(v), spanGaps: false }))],
          axes: [{}, { size: 50 }],
          scales: { x: { time: true } },
        }, data, chartBox);
      },
      // resize fits the chart to its column when that changed (window
      // resized, census table grown).
      resize() {
        if (chart && Math.abs(chart.width - chartWidth()) > 2) chart.setSize({ width: chartWidth(), height: 200 });
      },
      destroy() {
        if (chart) chart.destroy();
        el.remove();
      },
      update(vs, t) {
        const c = vs.connections || {};
        const req = vs.requests ? vs.requests.total : null;
        const srvOpened = http ? (vs.pool_reuse ? vs.pool_reuse.opened : null) : c.ServerOpened;
        head.querySelector('[data-field=describe]').textContent =
          `${vs.mode} · ${vs.addr || vs.listen} → pool ${vs.pool}${vs.tls ? ' · TLS' : ''}`;

        const s = { t, req, acc: c.Accepted, srv: srvOpened };
        const prev = samples[samples.length - 1];
        // A refresh right after an action comes early: a rate over a
        // fraction of a second is noise, so it waits for the next one.
        const sample = !prev || t - prev.t >= 1;
        if (sample) samples.push(s);
        while (samples.length > 2 && t - samples[0].t > WINDOW_S) samples.shift();
        if (prev && sample) {
          const rates = http ? [rate(prev, s, 'req'), rate(prev, s, 'acc'), rate(prev, s, 'srv')]
            : [rate(prev, s, 'acc'), rate(prev, s, 'srv')];
          data[0].push(t);
          rates.forEach((r, i) => data[i + 1].push(r));
          while (data[0].length > 0 && t - data[0][0] > WINDOW_S) data.forEach((col) => col.shift());
          if (chart) chart.setData(data);
          if (http) f.reqRate.set(rates[0], fmtRate(rates[0]), 'last 2 s');
          f.connRate.set(rates[http ? 1 : 0], fmtRate(rates[http ? 1 : 0]), 'last 2 s');
        }

        f.clientActive.set(c.Active, fmtInt(c.Active));
        f.accepted.set(c.Accepted, fmtInt(c.Accepted));
        f.serverActive.set(c.ServerActive, fmtInt(c.ServerActive));
        f.serverOpened.set(srvOpened, fmtInt(srvOpened), http ? 'by the reuse pool' : '');
        if (http) {
          f.requests.set(req, fmtInt(req));
          const per = c.Accepted > 0 ? req / c.Accepted : null;
          const recent = windowRatio();
          const kind = (x) => x === null ? '' : (x < 1.5 ? 'short: about one request per conn' : 'long: keepalive');
          f.perConn.set(per, per === null ? '—' : per.toFixed(1),
            recent === null ? kind(per) : `${kind(recent)} (${recent.toFixed(1)} lately)`);
          const r = vs.pool_reuse || { opened: 0, reused: 0 };
          const ratio = r.opened + r.reused > 0 ? r.reused / (r.opened + r.reused) : null;
          f.reuse.set(ratio, fmtPct(ratio), `${r.reused} reused / ${r.opened} opened`);
        }

        const note = el.querySelector('[data-field=census-note]');
        if (!vs.sockets) {
          note.textContent = 'socket census unavailable (sock_diag failed or timed out)';
          f.twClient.set(null, '—');
          f.twServer.set(null, '—');
          for (const side of ['client', 'server']) {
            for (const st of STATES) setCell(cells[side][st], null, 1);
          }
          return;
        }
        note.textContent = 'client side: local address = the listen address; server side: remote = a pool member';
        const max = Math.max(1, ...STATES.flatMap((st) => [vs.sockets.client[st] || 0, vs.sockets.server[st] || 0]));
        for (const side of ['client', 'server']) {
          for (const st of STATES) setCell(cells[side][st], vs.sockets[side][st] || 0, max);
        }
        f.twClient.set(vs.sockets.client.TIME_WAIT, fmtInt(vs.sockets.client.TIME_WAIT));
        f.twServer.set(vs.sockets.server.TIME_WAIT, fmtInt(vs.sockets.server.TIME_WAIT));
      },
    };
  }

  function setCell(cell, n, max) {
    cell.td.dataset.value = n === null ? '' : String(n);
    cell.num.textContent = fmtInt(n);
    cell.td.classList.toggle('zero', !n);
    cell.bar.style.width = n ? Math.max(2, Math.round(60 * n / max)) + 'px' : '0';
  }

  // ---- pools -----------------------------------------------------------

  const poolCards = new Map(); // pool name -> {el, tbody, rows: Map(address -> row)}

  function renderPools(list) {
    const root = $('#pools');
    const seen = new Set();
    for (const p of list) {
      seen.add(p.name);
      let pc = poolCards.get(p.name);
      if (!pc) {
        const tbody = h('tbody');
        const el = h('section', { class: 'card pool', 'data-pool': p.name }, h('h3', { text: 'pool ' + p.name }),
          h('table', {}, h('thead', {}, h('tr', {}, ...['member', 'state', 'admin', 'health', 'conns', 'in use', 'idle', 'connects', 'failed connects', '']
            .map((x) => h('th', { text: x })))), tbody));
        pc = { el, tbody, rows: new Map() };
        poolCards.set(p.name, pc);
        root.append(el);
      }
      const seenM = new Set();
      for (const m of p.members) {
        seenM.add(m.address);
        let row = pc.rows.get(m.address);
        if (!row) {
          row = newMemberRow(p.name, m.address);
          pc.rows.set(m.address, row);
          pc.tbody.append(row.el);
        }
        row.update(m);
      }
      for (const [addr, row] of pc.rows) {
        if (!seenM.has(addr)) { row.el.remove(); pc.rows.delete(addr); }
      }
    }
    for (const [name, pc] of poolCards) {
      if (!seen.has(name)) { pc.el.remove(); poolCards.delete(name); }
    }
  }

  function newMemberRow(pool, address) {
    const fields = ['state', 'admin', 'health', 'active', 'busy', 'idle', 'connects', 'connect-failures'];
    const td = {};
    for (const f of fields) td[f] = h('td', { 'data-field': f });
    const buttons = ACTIONS.map((a) => h('button', {
      type: 'button', 'data-action': a.action, 'data-pool': pool, 'data-member': address, text: a.verb,
    }));
    const el = h('tr', { 'data-member': address }, h('td', { text: address }), ...fields.map((f) => td[f]),
      h('td', { class: 'actions' }, ...buttons));
    return {
      el,
      update(m) {
        const counters = m.counters || {};
        const vals = {
          state: m.state, admin: m.admin, health: m.health, active: m.active, busy: m.active - m.idle, idle: m.idle,
          connects: counters.Connects, 'connect-failures': counters.ConnectFailures,
        };
        for (const f of fields) {
          td[f].textContent = fmtInt(vals[f]);
          td[f].dataset.value = vals[f] === undefined ? '' : String(vals[f]);
        }
        td.state.className = 'state-' + m.state;
        td.health.className = 'state-' + m.health;
        buttons.forEach((b, i) => { b.disabled = m.admin === ACTIONS[i].admin; });
      },
    };
  }

  async function memberAction(btn) {
    const { action, pool, member } = btn.dataset;
    const a = ACTIONS.find((x) => x.action === action);
    if (!confirm(`${a.verb} member ${member} of pool ${pool}?`)) return;
    btn.disabled = true;
    const r = await api('POST', `/api/v1/pools/${encodeURIComponent(pool)}/members/${encodeURIComponent(member)}/${action}`);
    const out = $('#action-result');
    out.hidden = false;
    if (r.status === 200 && r.body) {
      out.className = 'banner ok';
      out.textContent = `pool ${pool}, member ${member}: ${r.body.previous} → ${r.body.admin} (offers: ${r.body.state})`;
    } else {
      out.className = 'banner error';
      out.textContent = `${a.verb} ${member} failed: ` + (r.status ? `HTTP ${r.status}: ${r.error}` : r.error);
    }
    await refresh();
  }

  // ---- reload ----------------------------------------------------------

  async function reload() {
    const btn = $('#reload');
    btn.disabled = true;
    const r = await api('POST', '/api/v1/reload');
    btn.disabled = false;
    const box = $('#reload-result');
    const title = box.querySelector('[data-field=reload-title]');
    const err = box.querySelector('[data-field=reload-error]');
    const ul = box.querySelector('[data-field=reload-list]');
    ul.replaceChildren();
    box.dataset.status = String(r.status);
    box.hidden = false;
    const items = (xs) => (Array.isArray(xs) ? xs : []).map((x) => h('li', { text: String(x) }));
    if (r.status === 200 && r.body && r.body.ok) {
      const changes = items(r.body.changes);
      box.className = 'banner ok';
      box.dataset.kind = 'changes';
      title.textContent = `Reloaded at ${r.body.at}: ` + (changes.length ? `${changes.length} change(s)` : 'no changes');
      err.textContent = '';
      ul.append(...changes);
    } else {
      box.className = 'banner error';
      box.dataset.kind = 'problems';
      title.textContent = r.status ? `Reload failed (HTTP ${r.status}): ` : 'Reload failed: ';
      err.textContent = r.error || (r.body && r.body.error) || 'the reload was not applied';
      ul.append(...items(r.body && r.body.problems));
    }
    await refresh();
  }

  // ---- start -----------------------------------------------------------

  function start() {
    $('#pools').addEventListener('click', (ev) => {
      const btn = ev.target.closest('button[data-action]');
      if (btn && !btn.disabled) memberAction(btn);
    });
    $('#reload').addEventListener('click', reload);
    $('#token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = $('#token').value.trim();
      if (!v) return;
      sessionStorage.setItem(TOKEN_KEY, v);
      $('#token').value = '';
      $('#token-form').hidden = true;
      $('#banner').hidden = true;
      polling = true;
      refresh();
    });
    let resizeTimer = 0;
    window.addEventListener('resize', () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => cards.forEach((c) => c.resize()), 150);
    });
    refresh();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
