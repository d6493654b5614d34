// shibafu's console: the one script. Every page works without it; with it, an app's log
// streams into the page as the app writes it.
"use strict";
for (const pre of document.querySelectorAll("pre[data-follow]")) {
  (async () => {
    const resp = await fetch(pre.dataset.follow, { credentials: "same-origin" });
    if (!resp.ok || !resp.body) return;
    const reader = resp.body.getReader();
    const text = new TextDecoder();
    pre.textContent = "";
    pre.dataset.streaming = "true";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent += text.decode(value, { stream: true });
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
    pre.dataset.streaming = "ended";
  })().catch(() => { pre.dataset.streaming = "failed"; });
}
