// CORS from a real browser, driven by tests/app/players.rs:
//   node e2e/cors.mjs PAGE_URL STREAM_URL...
//
// Opens PAGE_URL (a page on another origin than the stream server) in
// Debian's Chromium and, from that page, fetches the first 100 bytes of each
// STREAM_URL twice: with `Range: bytes=0-99` alone (a CORS-safelisted
// header, no preflight), then adding `If-Range` with the ETag it read (not
// safelisted: a preflight first). Prints one JSON line: the page's origin and
// per URL the status, the exposed headers, the body length and bytes, or the
// error the fetch failed with.
import { chromium } from 'playwright-core';

const [page, ...urls] = process.argv.slice(2);
if (!page || urls.length === 0) {
  console.error('usage: node cors.mjs PAGE_URL STREAM_URL...');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const tab = await browser.newPage();
  await tab.goto(page);
  const summary = await tab.evaluate(async (urls) => {
    const read = async (url, headers) => {
      try {
        const res = await fetch(url, { headers, cache: 'no-store' });
        const body = new Uint8Array(await res.arrayBuffer());
        return {
          status: res.status,
          contentRange: res.headers.get('Content-Range'),
          acceptRanges: res.headers.get('Accept-Ranges'),
          contentLength: res.headers.get('Content-Length'),
          etag: res.headers.get('ETag'),
          length: body.length,
          bytes: Array.from(body),
        };
      } catch (err) {
        return { error: String(err && err.message ? `${err.name}: ${err.message}` : err) };
      }
    };
    const fetches = [];
    for (const url of urls) {
      const plain = await read(url, { Range: 'bytes=0-99' });
      if (!plain.error && plain.etag) {
        plain.preflighted = await read(url, { Range: 'bytes=0-99', 'If-Range': plain.etag });
        delete plain.preflighted.bytes;
      }
      fetches.push(plain);
    }
    return { origin: location.origin, fetches };
  }, urls);
  console.log(JSON.stringify(summary));
} finally {
  await browser.close();
}
