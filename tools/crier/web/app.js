// crier dashboard: renders the server's snapshots (first from /api/status, then live from
// the /api/stream server-sent events) and drives the dead-letter actions. Everything shown
// goes through textContent: nothing from the bus is ever parsed as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const fmt = (n) => (n === undefined || n === null ? '–' : Number(n).toLocaleString('en-US'));
const SVG = 'http://www.w3.org/2000/svg';
const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const PAGE = 25;

let last = null;           // the snapshot shown
let deadSeen = null;       // dead letters in the snapshot the table was loaded for
let dlOffset = 0;
let dlTotal = 0;          // dead letters the filters select
let editing = null;        // the dead letter in the editor

function el(tag, props = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function age(ms) {
  if (!ms) return '–';
  if (ms < 1000) return ms + ' ms';
  if (ms < 120000) return (ms / 1000).toFixed(1) + ' s';
  if (ms < 7200000) return Math.round(ms / 60000) + ' min';
  return Math.round(ms / 3600000) + ' h';
}

function fillBody(table, rows, emptyText, columns) {
  const body = $(table).tBodies[0];
  body.replaceChildren();
  if (rows.length === 0) body.append(el('tr', { class: 'empty' }, [el('td', { colSpan: columns, text: emptyText })]));
  for (const r of rows) body.append(r);
}

function cell(text, cls) { return el('td', { text: String(text), class: cls || '' }); }

// --- the snapshot ------------------------------------------------------------------------

// The breaker as its bus last announced it: state, and since when in the tooltip with why.
function breakerCell(b) {
  if (!b) return cell('–', 'breaker');
  const c = cell(b.state, 'breaker ' + b.state);
  c.title = b.state + ' since ' + b.since + ': ' + b.reason;
  return c;
}

function render(s) {
  const previous = last;
  last = s;
  $('bus').textContent = s.bus + (s.transport ? ' (' + s.transport + ')' : '');
  $('updated').textContent = 'updated ' + new Date(s.time || Date.now()).toLocaleTimeString();
  $('error').hidden = !s.error;
  $('error').textContent = s.error ? 'The last look at the bus failed: ' + s.error : '';
  const notices = s.notices || [];
  $('notices').hidden = notices.length === 0;
  $('notices').textContent = notices.join('\n');
  const t = s.totals || {};
  const perMinute = (s.event_types || []).reduce((a, x) => a + x.last_minute, 0);
  $('total-events').textContent = fmt(t.events);
  $('total-rate').textContent = fmt(perMinute) + (s.rate_capped ? '+' : '');
  $('total-lag').textContent = fmt(t.lag);
  $('total-in-flight').textContent = fmt(t.in_flight);
  $('total-retrying').textContent = fmt(t.retrying);
  $('total-dead').textContent = fmt(t.dead_letters);
  $('total-dead').classList.toggle('nonzero', t.dead_letters > 0);

  fillBody('subscribers', (s.subscribers || []).map((x) =>
    el('tr', { 'data-subscriber': x.subscriber, 'data-type': x.event_type }, [
      cell(x.subscriber), cell(x.event_type), cell(x.position || '–', 'n'), cell(fmt(x.lag), 'n lag'),
      cell(x.lag ? age(x.oldest_age_ms) : '–', 'n'), cell(x.idle_ms === null ? 'never' : age(x.idle_ms || 1), 'n idle'),
      cell(fmt(x.in_flight), 'n'), cell(fmt(x.retrying), 'n'), cell(fmt(x.dead_letters), 'n dead'),
      breakerCell(x.breaker)])),
    'No subscriber has read this bus yet.', 10);

  fillBody('types', (s.event_types || []).map((x) =>
    el('tr', { 'data-type': x.event_type }, [
      cell(x.event_type), cell(fmt(x.events), 'n stored'), cell(fmt(x.last_minute), 'n'), cell(x.newest, 'n'),
      cell(x.newest_time)])), 'No events stored.', 5);

  const seen = new Set(previous ? (previous.recent || []).map((e) => e.position) : []);
  fillBody('tail', (s.recent || []).map((e) =>
    el('tr', { 'data-position': e.position, class: previous && !seen.has(e.position) ? 'fresh' : '' }, [
      cell(e.position, 'n'), cell(e.time), cell(e.type), cell(e.id), cell(e.subject || ''), cell(e.data, 'data')])),
    'No events stored.', 6);

  drawTopology(s);
  drawLag(s);
  fillFilterChoices(s);
  const dead = t.dead_letters || 0;
  if (dead !== deadSeen) {
    deadSeen = dead;
    loadLetters();
  }
}

function drawTopology(s) {
  const box = $('topology');
  box.replaceChildren();
  const types = (s.event_types || []).map((x) => x.event_type);
  for (const x of s.subscribers || []) if (!types.includes(x.event_type)) types.push(x.event_type);
  const subs = [...new Set((s.subscribers || []).map((x) => x.subscriber))].sort();
  const rows = Math.max(types.length, subs.length, 1);
  const width = box.clientWidth || 600, h = rows * 48 + 10;
  const typeW = Math.min(260, width * 0.42), subW = Math.min(160, width * 0.25), subX = width - subW - 5;
  box.setAttribute('viewBox', `0 0 ${width} ${h}`);
  box.setAttribute('height', h);
  const yOf = (i, n) => 5 + (h - 10) * (i + 0.5) / n;
  const rate = Object.fromEntries((s.event_types || []).map((x) => [x.event_type, x.last_minute]));
  for (const x of s.subscribers || []) {
    const y1 = yOf(types.indexOf(x.event_type), types.length), y2 = yOf(subs.indexOf(x.subscriber), subs.length);
    const x1 = typeW + 5, x2 = subX, mid = (x1 + x2) / 2;
    box.append(svg('path', { class: 'edge', d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}` }));
    if (x.lag) box.append(svg('text', { x: x2 - 6, y: y2 - 5, 'text-anchor': 'end', class: 'muted' }, 'lag ' + fmt(x.lag)));
  }
  types.forEach((type, i) => {
    const y = yOf(i, types.length);
    box.append(svg('rect', { class: 'node', x: 5, y: y - 19, width: typeW, height: 38, rx: 5 }));
    box.append(svg('text', { x: 12, y: y - 3 }, type.length > 36 ? '…' + type.slice(-35) : type));
    box.append(svg('text', { x: 12, y: y + 13, class: 'muted' }, fmt(rate[type] || 0) + ' in the last minute'));
  });
  subs.forEach((name, i) => {
    const y = yOf(i, subs.length);
    box.append(svg('rect', { class: 'node', x: subX, y: y - 15, width: subW, height: 30, rx: 5 }));
    box.append(svg('text', { x: subX + 8, y: y + 4 }, name));
  });
}

function drawLag(s) {
  const box = $('lag-chart'), legend = $('lag-legend');
  box.replaceChildren();
  legend.replaceChildren();
  const times = (s.lag_history && s.lag_history.times) || [];
  const series = Object.entries((s.lag_history && s.lag_history.series) || {});
  const width = box.clientWidth || 600, h = 180, left = 50, bottom = 20;
  box.setAttribute('viewBox', `0 0 ${width} ${h}`);
  box.setAttribute('height', h);
  let top = 1;
  for (const [, points] of series) for (const p of points) if (p !== null && p > top) top = p;
  const t0 = times.length ? times[0] : 0, t1 = times.length ? times[times.length - 1] : 1;
  const x = (t) => left + (width - left - 5) * (t1 === t0 ? 1 : (t - t0) / (t1 - t0));
  const y = (v) => 5 + (h - bottom - 5) * (1 - v / top);
  box.append(svg('line', { class: 'axis', x1: left, y1: y(0), x2: width - 5, y2: y(0) }));
  box.append(svg('line', { class: 'axis', x1: left, y1: y(top), x2: width - 5, y2: y(top) }));
  box.append(svg('text', { x: left - 4, y: y(top) + 4, 'text-anchor': 'end', class: 'muted' }, fmt(top)));
  box.append(svg('text', { x: left - 4, y: y(0) + 4, 'text-anchor': 'end', class: 'muted' }, '0'));
  if (times.length) {
    box.append(svg('text', { x: left, y: h - 4, class: 'muted' }, '-' + age(t1 - t0)));
    box.append(svg('text', { x: width - 5, y: h - 4, 'text-anchor': 'end', class: 'muted' }, 'now'));
  }
  series.forEach(([name, points], i) => {
    const color = COLORS[i % COLORS.length];
    const path = points.map((p, k) => (p === null ? null : `${x(times[k])},${y(p)}`)).filter(Boolean).join(' ');
    box.append(svg('polyline', { points: path, fill: 'none', stroke: color, 'stroke-width': 2, 'data-series': name }));
    const swatch = el('i');
    swatch.style.background = color;
    legend.append(el('span', {}, [swatch, name]));
  });
}

function fillFilterChoices(s) {
  const keep = (id, values) => {
    const select = $(id), chosen = select.value;
    const have = [...select.options].map((o) => o.value).slice(1);
    if (have.join('\n') === values.join('\n')) return;
    select.replaceChildren(el('option', { value: '', text: 'any' }), ...values.map((v) => el('option', { value: v, text: v })));
    select.value = values.includes(chosen) ? chosen : '';
  };
  keep('dl-subscriber', [...new Set((s.subscribers || []).map((x) => x.subscriber))].sort());
  keep('dl-type', [...new Set((s.subscribers || []).map((x) => x.event_type))].sort());
}

// --- dead letters ------------------------------------------------------------------------

function letterQuery() {
  const q = new URLSearchParams();
  for (const [key, id] of [['subscriber', 'dl-subscriber'], ['type', 'dl-type'], ['error', 'dl-error'], ['since', 'dl-since']])
    if ($(id).value) q.set(key, $(id).value.trim());
  return q;
}

let letterRequests = 0;    // only the answer to the latest request is shown
let lettersShown = '';     // what the table shows, so that an unchanged answer leaves it be

async function loadLetters() {
  const q = letterQuery();
  q.set('offset', dlOffset);
  q.set('limit', PAGE);
  const request = ++letterRequests;
  let page;
  try {
    page = await getJSON('/api/dead-letters?' + q);
  } catch (e) {
    return say(e.message, true);
  }
  if (request !== letterRequests) return;
  const shown = JSON.stringify(page);
  if (shown === lettersShown) return;
  lettersShown = shown;
  if (dlOffset > 0 && dlOffset >= page.total) {
    dlOffset = Math.max(0, page.total - PAGE);
    return loadLetters();
  }
  fillBody('dead-letters', page.letters.map((l) => el('tr', { 'data-letter-id': l.id }, [
    cell(l.id, 'n'), cell(l.subscriber), cell(l.event_type), cell(l.attempts, 'n'), cell(l.last_failure),
    cell(l.last_error, 'reason'), cell(l.data, 'data'),
    el('td', {}, [
      el('button', { text: 'Show', className: 'show', onclick: () => showLetter(l.id) }),
      el('button', { text: 'Edit', className: 'edit', onclick: () => editLetter(l.id) }),
      el('button', { text: 'Redrive', className: 'redrive action', onclick: () => change('redrive', { ids: [l.id] }, `Send dead letter ${l.id} back to ${l.subscriber}?`) }),
      el('button', { text: 'Purge', className: 'purge danger', onclick: () => change('purge', { ids: [l.id] }, `Delete dead letter ${l.id} for good?`) }),
    ])])), 'No dead letters match.', 8);
  dlTotal = page.total;
  $('dl-page').textContent = page.total ? `${page.offset + 1}–${page.offset + page.letters.length} of ${fmt(page.total)}` : '';
  $('dl-prev').disabled = dlOffset === 0;
  $('dl-next').disabled = dlOffset + PAGE >= page.total;
  const all = page.total > 0;
  $('dl-redrive-all').disabled = !all;
  $('dl-purge-all').disabled = !all;
}

function say(text, error) {
  $('dl-message').textContent = text;
  $('dl-message').classList.toggle('error', !!error);
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: 'same-origin' });
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function post(path, body) {
  const r = await fetch(path, {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-Crier-Action': '1' }, body: JSON.stringify(body),
  });
  const answer = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(answer.error || r.statusText);
  return answer;
}

async function change(verb, selection, question) {
  if (!window.confirm(question)) return;
  try {
    const answer = await post('/api/dead-letters/' + verb, selection);
    const n = answer.redriven ?? answer.purged;
    say(`${verb === 'redrive' ? 'Redrove' : 'Purged'} ${n} dead letter${n === 1 ? '' : 's'}.`);
  } catch (e) {
    say(e.message, true);
  }
  deadSeen = null;
  loadLetters();
}

function matchingSelection() {
  const q = letterQuery();
  if (q.has('error') || q.has('since')) return null;  // the server selects by subscriber and type only
  return { all: true, subscriber: q.get('subscriber') || '', type: q.get('type') || '' };
}

async function changeAll(verb) {
  let selection = matchingSelection(), count;
  if (!selection) {
    // Error text and time filter on this side: act on exactly the ids they select.
    const q = letterQuery();
    q.set('limit', 200);
    const ids = [];
    for (let offset = 0; ; offset += 200) {
      q.set('offset', offset);
      const page = await getJSON('/api/dead-letters?' + q);
      ids.push(...page.letters.map((l) => l.id));
      if (page.letters.length < 200) break;
    }
    if (!ids.length) return say('No dead letters match.', true);
    selection = { ids };
    count = ids.length;
  } else {
    count = dlTotal;
  }
  const what = `${count} dead letter${count === 1 ? '' : 's'}`;
  await change(verb, selection, verb === 'redrive' ? `Send ${what} back to their subscribers?` : `Delete ${what} for good?`);
}

async function showLetter(id) {
  try {
    const letter = await getJSON('/api/dead-letters/' + id);
    $('letter-title').textContent = `Dead letter ${id}: ${letter.subscriber}, ${letter.attempts} attempts`;
    $('letter-body').textContent = JSON.stringify(letter, null, 2);
    $('letter').showModal();
  } catch (e) {
    say(e.message, true);
  }
}

async function editLetter(id) {
  try {
    const letter = await getJSON('/api/dead-letters/' + id);
    editing = id;
    const data = letter.event.data !== undefined ? JSON.stringify(letter.event.data, null, 2) : (letter.event.data_base64 || '');
    $('editor-title').textContent = `Edit and redrive dead letter ${id} (${letter.event_type} to ${letter.subscriber})`;
    $('editor-data').value = data;
    $('editor-error').textContent = '';
    $('editor').showModal();
  } catch (e) {
    say(e.message, true);
  }
}

async function saveEdit() {
  const text = $('editor-data').value;
  try {
    JSON.parse(text);
  } catch (e) {
    $('editor-error').textContent = 'Not JSON: ' + e.message;
    return;
  }
  try {
    await post(`/api/dead-letters/${editing}/edit`, { data: text });
    $('editor').close();
    say(`Redrove dead letter ${editing} with edited data.`);
  } catch (e) {
    $('editor-error').textContent = e.message;
    return;
  }
  deadSeen = null;
  loadLetters();
}

// --- live --------------------------------------------------------------------------------

function connect() {
  const stream = new EventSource('/api/stream');
  stream.addEventListener('snapshot', (m) => {
    $('live').textContent = 'live';
    $('live').className = 'live on';
    render(JSON.parse(m.data));
  });
  stream.onerror = () => {
    $('live').textContent = 'reconnecting…';
    $('live').className = 'live off';
  };
}

document.addEventListener('DOMContentLoaded', async () => {
  for (const id of ['dl-subscriber', 'dl-type']) $(id).addEventListener('change', () => { dlOffset = 0; loadLetters(); });
  for (const id of ['dl-error', 'dl-since']) $(id).addEventListener('change', () => { dlOffset = 0; loadLetters(); });
  $('dl-prev').onclick = () => { dlOffset = Math.max(0, dlOffset - PAGE); loadLetters(); };
  $('dl-next').onclick = () => { dlOffset += PAGE; loadLetters(); };
  $('dl-redrive-all').onclick = () => changeAll('redrive');
  $('dl-purge-all').onclick = () => changeAll('purge');
  $('editor-cancel').onclick = () => $('editor').close();
  $('editor-save').onclick = saveEdit;
  try {
    render(await getJSON('/api/status'));
  } catch (e) {
    $('error').hidden = false;
    $('error').textContent = 'Cannot reach the dashboard: ' + e.message;
  }
  connect();
});
