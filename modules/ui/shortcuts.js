() => {
  // A1111 habit: Ctrl+Enter (or Cmd+Enter) in a prompt box presses Generate, Escape presses Interrupt.
  document.addEventListener("keydown", (event) => {
    const inPrompt = event.target.closest && event.target.closest("#txt2img_prompt, #txt2img_neg_prompt");
    if (!inPrompt) return;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      document.querySelector("#txt2img_generate")?.click();
    } else if (event.key === "Escape") {
      document.querySelector("#txt2img_interrupt")?.click();
    }
  });
}
