/* shopreco click recorder (optional; widgets render and links work without it).
   On a click inside a recommendation widget it tells the server which list the product came
   from, so a cart or purchase later is credited even if the product URL loses ?rec=. */
(function () {
  "use strict";
  function send(url, rec, product) {
    var body = new FormData();
    body.append("rec", rec);
    body.append("product", product);
    if (navigator.sendBeacon && navigator.sendBeacon(url, body)) return;
    if (window.fetch) {
      fetch(url, { method: "POST", body: body, keepalive: true, credentials: "same-origin" });
    }
  }
  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target || !target.closest) return;
    var link = target.closest("a[href]");
    var item = link && link.closest("[data-shopreco-product]");
    var root = item && item.closest("[data-shopreco-click-url]");
    if (!root || !root.getAttribute("data-shopreco-click-url")) return;
    send(root.getAttribute("data-shopreco-click-url"),
         item.getAttribute("data-shopreco-recommendation"),
         item.getAttribute("data-shopreco-product"));
  }, true);
})();
