// input.c: opening input files without hanging on a FIFO or a device.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats.h"

int open_regular(const char *path, HpErr *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);  // a FIFO without a writer would block here
    if (fd < 0) return hp_fail(err, "cannot open: %s", strerror(errno));
    struct stat st;
    int flags;
    if (fstat(fd, &st) != 0) {
        hp_fail(err, "cannot stat: %s", strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        hp_fail(err, "not a regular file");
    } else if ((flags = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        hp_fail(err, "cannot open: %s", strerror(errno));
    } else {
        return fd;
    }
    close(fd);
    return -1;
}
