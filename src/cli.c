/* placeholder: the clonefs tool is being written (issue 5) */
#include <stdio.h>
int main(void) { fputs("clonefs: not built yet\n", stderr); return 1; }
