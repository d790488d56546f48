// A1111's page helpers that extension scripts (javascript/*.js) call: gradioApp(), onUiLoaded(),
// onAfterUiUpdate(), onUiUpdate(), onUiTabChange(), onOptionsChanged(), get_uiCurrentTabContent().
// Loaded in the page head before the extensions' own scripts.
(function () {
  const loaded = [], updated = [], tabChanged = [], optionsChanged = [];
  let uiIsLoaded = false, lastTab = null, pending = null;
  window.gradioApp = function () {
    const app = document.getElementsByTagName("gradio-app");
    const root = app.length ? (app[0].shadowRoot || app[0]) : document;
    return root.querySelector ? root : document;
  };
  window.onUiLoaded = (cb) => loaded.push(cb);
  window.onAfterUiUpdate = (cb) => updated.push(cb);
  window.onUiUpdate = (cb) => updated.push(cb);
  window.onUiTabChange = (cb) => tabChanged.push(cb);
  window.onOptionsChanged = (cb) => optionsChanged.push(cb);
  window.get_uiCurrentTab = () => document.querySelector("#tabs button[role=tab][aria-selected=true]");
  window.get_uiCurrentTabContent = () => document.querySelector("#tabs > div[role=tabpanel]:not([hidden])");
  const run = (list, what) => list.forEach((cb) => { try { cb(); } catch (e) { console.error(what, e); } });
  const observer = new MutationObserver(() => {
    if (!uiIsLoaded && document.querySelector("#txt2img_prompt")) {  // A1111 waits for the prompt box
      uiIsLoaded = true;
      run(loaded, "onUiLoaded callback");
    }
    if (!uiIsLoaded) return;
    clearTimeout(pending);
    pending = setTimeout(() => run(updated, "onAfterUiUpdate callback"), 200);
    const tab = window.get_uiCurrentTab();
    if (tab && tab !== lastTab) {
      lastTab = tab;
      run(tabChanged, "onUiTabChange callback");
    }
  });
  document.addEventListener("DOMContentLoaded", () => observer.observe(document.body || document.documentElement,
    { childList: true, subtree: true }));
  if (document.body) observer.observe(document.body, { childList: true, subtree: true });
})();
