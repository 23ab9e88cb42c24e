// Browser end-to-end test of sage-stream in Debian's Chromium, driven by
// tests/app/browser.rs:  node e2e/browser.mjs BASE_URL ADMIN_TOKEN OUT_DIR
//
// Plays and seeks the sample clip from the player page, checks that the
// position and a decoded frame follow, then uses the admin: finds the rows
// of that playback, searches, filters, downloads the CSV and opens the
// analytics. Screenshots go to OUT_DIR; a JSON summary goes to stdout.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [base, token, outDir] = process.argv.slice(2);
if (!base || !token || !outDir) {
  console.error('usage: node browser.mjs BASE_URL ADMIN_TOKEN OUT_DIR');
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });
const summary = {};
const fail = (message) => { throw new Error(message); };
// Every console message that reports a Content-Security-Policy violation:
// the pages must work under their strict policy without one.
const cspViolations = [];
const watchCsp = (p) => p.on('console', (msg) => {
  if (/Content.Security.Policy/i.test(msg.text())) cspViolations.push(msg.text());
});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
try {
  // --- Player: pick the clip from the list, play, seek.
  const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
  watchCsp(page);
  await page.goto(`${base}/`);
  await page.click('text=sample.mp4');
  await page.waitForSelector('video#player');
  const playback = await page.evaluate(async () => {
    const v = document.getElementById('player');
    v.muted = true;
    const until = (event, ms) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timeout waiting for ${event}`)), ms);
      v.addEventListener(event, () => { clearTimeout(timer); resolve(); }, { once: true });
    });
    if (v.readyState < 3) await until('canplay', 20000);
    await v.play();
    await new Promise((r) => setTimeout(r, 1000));
    const playedTo = v.currentTime;
    const seeked = until('seeked', 20000);
    v.currentTime = 8;
    await seeked;
    await new Promise((r) => setTimeout(r, 700));
    const afterSeek = v.currentTime;
    // A decoded frame: draw it and measure how much its pixels vary.
    const canvas = document.createElement('canvas');
    canvas.width = v.videoWidth; canvas.height = v.videoHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(v, 0, 0);
    const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
    let min = 255, max = 0, sum = 0;
    for (let i = 0; i < data.length; i += 4) {
      const y = (data[i] + data[i + 1] + data[i + 2]) / 3;
      min = Math.min(min, y); max = Math.max(max, y); sum += y;
    }
    return { duration: v.duration, playedTo, afterSeek, width: v.videoWidth, height: v.videoHeight,
      paused: v.paused, error: v.error && v.error.code, lumaMin: min, lumaMax: max,
      lumaMean: sum / (data.length / 4) };
  });
  summary.playback = playback;
  if (playback.error) fail(`video error ${playback.error}`);
  if (!(playback.playedTo > 0.3)) fail(`did not play: ${playback.playedTo}`);
  if (!(playback.afterSeek >= 8 && playback.afterSeek < 11)) fail(`seek did not land: ${playback.afterSeek}`);
  if (!(playback.lumaMax - playback.lumaMin > 40)) fail('decoded frame is flat');
  await page.screenshot({ path: join(outDir, 'player.png') });
  // Keyboard: the focused video reacts to the space bar (pause).
  await page.focus('video#player');
  await page.keyboard.press('Space');
  await page.waitForTimeout(300);
  summary.pausedByKeyboard = await page.evaluate(() => document.getElementById('player').paused);
  await page.close();

  // Give the watch log's writer a moment (it batches every 200 ms).
  await new Promise((r) => setTimeout(r, 800));

  // --- Admin, with the token as the Basic-auth password.
  const admin = await browser.newContext({
    httpCredentials: { username: 'admin', password: token },
    viewport: { width: 1280, height: 800 },
    acceptDownloads: true,
  });
  const ap = await admin.newPage();
  watchCsp(ap);
  const rows = async () => ap.$$eval('table#log tbody tr', (trs) => trs
    .map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent))
    .filter((cells) => cells.length > 1));
  await ap.goto(`${base}/admin/`);
  const all = await rows();
  summary.adminRows = all.length;
  const playbackRows = all.filter((c) => c[1] === 'sample.mp4' && (c[5] === '206' || c[5] === '200'));
  if (playbackRows.length === 0) fail('no watch-log rows of the playback');
  await ap.screenshot({ path: join(outDir, 'admin.png'), fullPage: false });

  await ap.fill('input[name=q]', 'sample.mp4');
  await ap.click('button[type=submit]');
  await ap.waitForURL(/q=sample\.mp4/);
  const searched = await rows();
  if (searched.length === 0 || searched.some((c) => !c[1].includes('sample.mp4'))) fail('search did not narrow to sample.mp4');
  summary.searchRows = searched.length;

  await ap.selectOption('select[name=authenticated]', 'no');
  await ap.fill('input[name=status]', '206');
  await ap.click('button[type=submit]');
  await ap.waitForURL(/status=206/);
  const filtered = await rows();
  if (filtered.some((c) => c[5] !== '206' || c[3] !== 'no')) fail('filter let other rows through');
  summary.filteredRows = filtered.length;

  const [download] = await Promise.all([ap.waitForEvent('download'), ap.click('#export-csv')]);
  const csvPath = join(outDir, 'watch-log.csv');
  await download.saveAs(csvPath);
  const csv = readFileSync(csvPath, 'utf8').trim().split(/\r?\n/);
  if (!csv[0].startsWith('id,created_at,path')) fail('CSV header missing');
  if (csv.length - 1 !== filtered.length) fail(`CSV has ${csv.length - 1} rows, page shows ${filtered.length}`);
  summary.csvRows = csv.length - 1;

  await ap.goto(`${base}/admin/analytics`);
  const bars = await ap.$$eval('svg rect.bar', (r) => r.length);
  if (bars === 0) fail('no chart');
  const sessions = await ap.$$eval('table#sessions tbody tr', (trs) => trs
    .map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => td.textContent))
    .filter((cells) => cells.length > 1 && cells[1] === 'sample.mp4'));
  if (sessions.length === 0) fail('no viewing session of sample.mp4');
  summary.session = sessions[0];
  await ap.screenshot({ path: join(outDir, 'analytics.png'), fullPage: true });
  await admin.close();
} finally {
  await browser.close();
}
summary.cspViolations = cspViolations;
console.log(JSON.stringify(summary));
