/* placeholder: being written */
typedef int uvmqtt__placeholder_t;
