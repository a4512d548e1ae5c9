typedef int tu_placeholder_t;
