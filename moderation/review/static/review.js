// The review page works without this file; it only adds "select all" for bulk actions.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const all = document.getElementById("select-all");
  if (!all) return;
  all.addEventListener("change", () => {
    for (const box of document.querySelectorAll('input[name="post"]')) {
      box.checked = all.checked;
    }
  });
});
