// input.c: opening input files without hanging on a FIFO or a device.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats.h"

FILE *fopen_regular(const char *path, uint64_t *size, HpErr *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);  // a FIFO without a writer would block here
    if (fd < 0) return hp_fail(err, "cannot open: %s", strerror(errno)), NULL;
    struct stat st;
    int flags;
    FILE *fp = NULL;
    if (fstat(fd, &st) != 0)
        hp_fail(err, "cannot stat: %s", strerror(errno));
    else if (!S_ISREG(st.st_mode))
        hp_fail(err, "not a regular file");
    else if ((flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0 ||
             !(fp = fdopen(fd, "rb")))
        hp_fail(err, "cannot open: %s", strerror(errno));
    if (!fp) {
        close(fd);
        return NULL;
    }
    if (size) *size = (uint64_t)st.st_size;
    return fp;
}
