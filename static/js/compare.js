// The before/after slider (templates/media/_compare_slider.html): the range input sets how
// much of the "after" image shows. One delegated listener, so sliders that htmx swaps in
// work too.
(function () {
  "use strict";
  function update(range) {
    var slider = range.closest("[data-compare]");
    if (slider) slider.style.setProperty("--compare", range.value + "%");
  }
  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("[data-compare-range]")) update(event.target);
  });
})();
