# The lab's login shell: the banner once per login on the console, and a plain prompt.
if [ -n "${PS1:-}" ]; then
    PS1='[shibafu-lab \W]# '
    [ -t 0 ] && [ -z "${SHIBAFU_QUIET:-}" ] && /usr/local/lib/shibafu/lab-banner
fi
